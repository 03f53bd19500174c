"""The labelled demo ticket set: deterministic, committed file up to date, every (topic, ask, slot) once, at least
MIN_PER_TOPIC rows a topic, the counts its card states, and the data stage keeps every row."""
import json
from collections import Counter
from pathlib import Path

import pytest

from tasks.data import demo, demo_tickets
from tasks.data.config import DataConfig
from tasks.data.formats import KIND, detect
from tasks.data.pipeline import prepare

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "conf" / "data" / "demo_tickets.jsonl"
CARD = ROOT / "conf" / "data" / "README.md"


@pytest.fixture(scope="module")
def built() -> list[dict]:
    return demo_tickets.build()


@pytest.fixture(scope="module")
def content() -> demo.Content:
    return demo.load_content()


def test_generation_is_deterministic_and_the_committed_file_is_its_output(built, tmp_path):
    assert demo.render(demo_tickets.build()) == demo.render(built)
    assert demo.render(demo_tickets.build(seed=demo_tickets.SEED + 1)) != demo.render(built)
    demo_tickets.main(["--out", str(tmp_path / "one.jsonl")])
    demo_tickets.main(["--out", str(tmp_path / "two.jsonl")])
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes() == DATA.read_bytes()


def test_rows_are_labelled_tickets_one_per_combination_and_at_least_twenty_a_topic(built, content):
    assert demo_tickets.MIN_PER_TOPIC == 20
    assert all(list(r) == ["text", "label"] and r["text"].strip() and detect(r) == "labelled" for r in built)
    assert KIND["labelled"] == "classification"
    counts = Counter(r["label"] for r in built)
    assert set(counts) == {t.name for t in content.topics} and len(counts) == 32
    assert len({r["text"] for r in built}) == len(built) == 725
    for topic in content.topics:
        texts = [r["text"] for r in built if r["label"] == topic.name]
        combos = [a.format(**s) for a in topic.asks for s in topic.slots]
        assert counts[topic.name] == max(len(combos), 20) >= 20, topic.name
        # every combination is in the set, as the whole ticket or wrapped in a greeting and sign-off
        uses = Counter(next(c for c in sorted(combos, key=len, reverse=True) if c in t) for t in texts)
        assert set(uses) == set(combos), topic.name
        assert max(uses.values()) - min(uses.values()) <= 1, topic.name  # top-ups spread over the combinations
    assert (min(counts.values()), max(counts.values())) == (20, 36)
    assert sorted(k for k, n in counts.items() if n == 36) == ["error codes", "retention", "scheduling with cron"]


def test_greetings_and_sign_offs_come_from_the_content_file(built, content):
    openers = [o for o in content.ticket_openers if o]
    closers = [c for c in content.ticket_closers if c]
    assert openers and closers
    wrapped = [r["text"] for r in built if r["text"].startswith(tuple(openers)) or r["text"].endswith(tuple(closers))]
    assert 0 < len(wrapped) < len(built)
    for text in wrapped:
        assert not text.startswith(" ") and "  " not in text and not text.endswith(" ")


def test_card_states_the_counts(built):
    cells = {}
    for line in CARD.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ticket_"):
            key, value = (c.strip() for c in line.strip().strip("|").split("|"))
            cells[key] = int(value)
    counts = Counter(r["label"] for r in built)
    assert cells == {"ticket_rows": len(built), "ticket_labels": len(counts), "ticket_rows_per_label_min": min(counts.values()),
                     "ticket_rows_per_label_max": max(counts.values()), "ticket_rows_kept": 725}  # fmt: skip


def test_the_data_stage_keeps_every_ticket_with_its_label(tmp_path):
    cfg = DataConfig(sources=[{"name": "tickets", "path": str(DATA), "license": "Apache-2.0"}],
                     decontamination={"enabled": False}, validation={"enabled": False})  # fmt: skip
    out = prepare(cfg, tmp_path / "out")
    assert out.kind == "classification" and out.counts["rows_in"] == out.counts["rows_kept"] == 725
    report = json.loads(out.report_path.read_text())
    assert report["pii"]["found"] == {} and report["near_duplicates"]["clusters"] == []
    totals = Counter(out.labels["train"]) + Counter(out.labels["validation"])
    assert totals == Counter(json.loads(line)["label"] for line in DATA.read_text(encoding="utf-8").splitlines())
