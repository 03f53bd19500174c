"""The committed demo preference set is what the generator writes, with the kinds and flaws its card states, and
data prep quarantines exactly the planted chosen == rejected pairs and duplicates."""
import json
from collections import Counter
from pathlib import Path

from tasks.data import demo
from tasks.data.demo_preferences import KINDS, build

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "conf" / "data" / "demo_preferences.jsonl"


def test_committed_file_is_the_generators_output(shared_data):
    rows, flaws = build(shared_data=shared_data)
    assert COMMITTED.read_text(encoding="utf-8") == demo.render(rows)
    kinds = Counter(r["kind"] for r in rows)
    assert len(rows) == 332 and kinds["same_reply"] == 2 and set(kinds) == {*KINDS, "same_reply"}
    assert len(flaws["exact_duplicate"]) == 4 and len(flaws["same_reply"]) == 2


def test_every_rejected_reply_is_worse_in_its_own_way(shared_data):
    rows, _ = build(shared_data=shared_data)
    for r in rows:
        if r["kind"] == "leak":
            assert r["rejected"].startswith(r["chosen"]) and "AKIA" in r["rejected"]
        elif r["kind"] in ("off_topic", "rude", "wrong"):
            assert r["rejected"] != r["chosen"]
    lines = [json.loads(x) for x in COMMITTED.read_text().splitlines()]
    assert all(x["prompt"][-1]["role"] == "user" for x in lines)
