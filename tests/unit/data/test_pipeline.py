import json

import pytest

from tasks.data.config import DataConfig
from tasks.data.pipeline import DataError, LicenseBlocked, prepare
from tests.unit.data.conftest import chat, read_jsonl

FAST = {"decontamination": {"enabled": False}, "validation": {"data_docs": False}}


def _cfg(sources, **kw):
    return DataConfig(sources=sources, **(FAST | kw))


def test_mixed_formats_counts_add_up_and_pii_is_gone(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [
        chat("Email me at jane.roe@example.org please", "Sure, I will write to you soon."),
        chat("email me at   JANE.ROE@example.org please", "Sure, I will write to you soon."),  # exact dup after PII
        chat("What is the capital of France?", "Paris is the capital of France."),
        chat("My card is 4111 1111 1111 1111, charge it", "I cannot process payments."),
    ])  # fmt: skip
    b = write_jsonl("b.jsonl", [
        {"instruction": "Say hi", "input": "", "output": "Hi! Call me on +1 415 555 2671 or at 10.0.0.12"},
        {"instruction": "Add the numbers", "input": "2 and 3", "output": "5"},
    ])  # fmt: skip
    cfg = _cfg([{"name": "a", "path": str(a), "license": "MIT"}, {"name": "b", "path": str(b), "license": "apache-2.0"}],
               validation_fraction=0.25)  # fmt: skip
    out = prepare(cfg, tmp_path / "out")

    c = out.counts
    assert c["rows_in"] == 6
    assert c["rows_in"] == c["rows_kept"] + sum(v for k, v in c.items() if k.startswith("dropped_"))
    assert c["dropped_exact_duplicate"] == 1
    assert (c["rows_train"], c["rows_validation"]) == (4, 1)
    assert out.licenses == {"a": "MIT", "b": "Apache-2.0"} and out.kind == "sft"
    written = "".join(p.read_text() for p in (out.train_path, out.validation_path, out.quarantine_path))
    for secret in ("jane.roe@example.org", "JANE.ROE", "4111 1111 1111 1111", "415 555 2671", "10.0.0.12"):
        assert secret not in written
    assert "<EMAIL>" in written and "<CREDIT_CARD>" in written and "<PHONE>" in written and "<IP_ADDRESS>" in written
    rows = {r["id"]: r for r in read_jsonl(out.train_path) + read_jsonl(out.validation_path)}
    assert rows["b:2"]["messages"] == [{"role": "user", "content": "Add the numbers\n\n2 and 3"},
                                       {"role": "assistant", "content": "5"}]  # fmt: skip
    report = json.loads(out.report_path.read_text())
    assert report["counts"] == c and report["pii"]["found"] == {"EMAIL": 2, "CREDIT_CARD": 1, "PHONE": 1, "IP_ADDRESS": 1}
    assert [q["id"] for q in read_jsonl(out.quarantine_path)] == ["a:2"]


def test_digest_is_stable_and_split_is_seeded(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [chat(f"question number {i} about topic {i * 7}", f"answer {i}") for i in range(40)])
    cfg = _cfg([{"name": "a", "path": str(a), "license": "MIT"}], near_dedup={"enabled": False})
    one, two = prepare(cfg, tmp_path / "one"), prepare(cfg, tmp_path / "two")
    assert one.digest == two.digest and len(one.digest) == 64
    assert one.train_path.read_text() == two.train_path.read_text()
    assert one.counts["rows_validation"] == 4
    other = prepare(cfg.model_copy(update={"seed": 1}), tmp_path / "three")
    assert other.validation_path.read_text() != one.validation_path.read_text()
    assert other.digest == one.digest  # same kept rows, different split


def test_pii_drop_action_quarantines_hash_only(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [chat("my ssn is 078-05-1121? no: 536-22-1234", "Please do not share it."),
                                chat("Hello there friend", "Hello to you too.")])  # fmt: skip
    cfg = _cfg([{"name": "a", "path": str(a), "license": "MIT"}], pii={"actions": {"US_SSN": "drop"}})
    out = prepare(cfg, tmp_path / "out")
    assert out.counts["dropped_pii"] == 1 and out.counts["rows_kept"] == 1
    (entry,) = read_jsonl(out.quarantine_path)
    assert entry["reason"] == "pii" and entry["detail"] == ["US_SSN"] and len(entry["sha256"]) == 64
    assert "536-22-1234" not in out.quarantine_path.read_text() and "row" not in entry


def test_nc_source_blocks_before_anything_is_written(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [chat("hi", "hello")])
    cfg = _cfg([{"name": "ok", "path": str(a), "license": "MIT"}, {"name": "nc", "path": str(a), "license": "CC-BY-NC-4.0"}])
    with pytest.raises(LicenseBlocked, match=r"'nc'.*CC-BY-NC-4.0"):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]


def test_zero_rows_kept_raises_and_writes_nothing(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [chat("same question here", "same answer"), chat("same question here", "same answer")])
    cfg = _cfg([{"name": "a", "path": str(a), "license": "MIT", "weight": 0.0}])
    with pytest.raises(DataError, match="no rows left"):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
