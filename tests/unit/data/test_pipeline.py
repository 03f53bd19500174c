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


def test_hh_rlhf_file_prepares_into_preference_rows_with_data_docs(tmp_path, shared_data):
    cfg = DataConfig(sources=[{"name": "hh", "path": str(shared_data / "hh-rlhf/harmless-base/test.jsonl.gz"),
                               "license": "MIT", "max_rows": 120}], on_bad_row="skip",
                     decontamination={"benchmarks_dir": str(shared_data), "benchmarks": ["truthfulqa"]})  # fmt: skip
    out = prepare(cfg, tmp_path / "out")
    assert out.kind == "preference" and out.counts["rows_in"] == 120
    assert out.counts["rows_in"] == out.counts["rows_kept"] + sum(v for k, v in out.counts.items() if k.startswith("dropped_"))
    row = read_jsonl(out.train_path)[0]
    assert set(row) == {"id", "source", "messages", "chosen", "rejected"} and row["messages"][-1]["role"] == "user"
    assert out.data_docs_path == tmp_path / "out" / "data_docs" / "index.html" and out.data_docs_path.is_file()
    report = json.loads(out.report_path.read_text())
    assert report["validation"]["success"] and report["licenses"][0]["decision"] == "allowed"


def test_contaminated_row_is_dropped_and_reported(tmp_path, write_jsonl, shared_data):
    import csv

    with open(shared_data / "mmlu/test/college_physics_test.csv", encoding="utf-8", newline="") as fh:
        question = max((r[0] for r in csv.reader(fh)), key=len)
    bench = tmp_path / "bench" / "mmlu" / "test"
    bench.mkdir(parents=True)
    (bench / "college_physics_test.csv").write_bytes((shared_data / "mmlu/test/college_physics_test.csv").read_bytes())
    a = write_jsonl("a.jsonl", [chat(question, "The answer is C."), chat("What is a photon?", "A quantum of light.")])
    cfg = DataConfig(sources=[{"name": "a", "path": str(a), "license": "MIT"}], validation={"data_docs": False},
                     decontamination={"benchmarks_dir": str(tmp_path / "bench")})  # fmt: skip
    out = prepare(cfg, tmp_path / "out")
    assert out.counts["dropped_contaminated"] == 1 and out.counts["rows_kept"] == 1
    report = json.loads(out.report_path.read_text())
    (hit,) = report["decontamination"]["dropped"]
    assert hit["id"] == "a:1" and hit["benchmark"].startswith("mmlu/test/college_physics_test.csv:")
    assert report["decontamination"]["benchmarks"]["truthfulqa"].startswith("missing")


def test_hf_dataset_from_disk_takes_its_license_from_the_card(tmp_path):
    import datasets

    info = datasets.DatasetInfo(license="cc-by-4.0")
    rows = [{"instruction": f"Name a prime number above {i * 10}", "output": str(p)} for i, p in enumerate([11, 23, 31])]
    datasets.Dataset.from_list(rows, info=info).save_to_disk(str(tmp_path / "hf"))
    out = prepare(_cfg([{"name": "hf", "path": str(tmp_path / "hf")}]), tmp_path / "out")
    assert out.licenses == {"hf": "CC-BY-4.0"} and out.counts["rows_kept"] == 3
    assert json.loads(out.report_path.read_text())["licenses"][0]["from"].endswith("dataset_info.json")


def test_weights_subsample_and_upsample_with_balanced_counts(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [chat(f"alpha question {i} about item {i * 3}", f"alpha {i}") for i in range(40)])
    b = write_jsonl("b.jsonl", [chat(f"beta question {i} about thing {i * 7}", f"beta {i}") for i in range(10)])
    cfg = _cfg([{"name": "a", "path": str(a), "license": "MIT", "weight": 0.5},
                {"name": "b", "path": str(b), "license": "MIT", "weight": 2.0}], near_dedup={"enabled": False})  # fmt: skip
    out = prepare(cfg, tmp_path / "out")
    c = out.counts
    assert 10 <= c["dropped_mix_weight"] <= 30 and c["rows_in"] == c["rows_kept"] + c["dropped_mix_weight"]
    train = read_jsonl(out.train_path)
    b_train = [r for r in train if r["source"] == "b" and "#r" not in r["id"]]
    assert c["rows_upsampled"] == len(b_train) == len([r for r in train if r["id"].endswith("#r1")])
    assert c["rows_train"] == c["rows_kept"] - c["rows_validation"] + c["rows_upsampled"]


def test_validation_failure_leaves_an_existing_out_dir_untouched(tmp_path, write_jsonl, monkeypatch):
    import great_expectations.expectations as gxe

    from tasks.data import validate
    from tasks.data.pipeline import ValidationFailed

    a = write_jsonl("a.jsonl", [chat("hello there", "general kenobi")])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "train.jsonl").write_text("previous run\n")
    real = validate.suite_expectations
    monkeypatch.setattr(validate, "suite_expectations",
                        lambda *a, **k: real(*a, **k) + [gxe.ExpectTableRowCountToBeBetween(min_value=10)])
    with pytest.raises(ValidationFailed, match=r"expect_table_row_count_to_be_between\(table\)"):
        prepare(_cfg([{"name": "a", "path": str(a), "license": "MIT"}]), out_dir)
    assert [p.name for p in out_dir.iterdir()] == ["train.jsonl"] and (out_dir / "train.jsonl").read_text() == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "out"]


def test_bad_second_source_raises_before_anything_is_written(tmp_path, write_jsonl):
    good = write_jsonl("good.jsonl", [chat("hi", "hello")])
    bad = write_jsonl("bad.jsonl", [chat("hi", "hello"), '{"messages": '])
    cfg = _cfg([{"name": "good", "path": str(good), "license": "MIT"}, {"name": "bad", "path": str(bad), "license": "MIT"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON"):
        prepare(cfg, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl"]


def test_names_required_without_a_spacy_model_fails_before_any_row_is_read(tmp_path):
    cfg = _cfg([{"name": "a", "path": str(tmp_path / "missing.jsonl"), "license": "MIT"}],
               pii={"names": "required", "spacy_model": "no_such_model"})  # fmt: skip
    with pytest.raises(DataError, match="pii.names=required but spaCy model 'no_such_model' is not installed"):
        prepare(cfg, tmp_path / "out")  # the missing source would be the error if any row were read
    assert not (tmp_path / "out").exists()


@pytest.fixture()
def long_file_with_a_bad_line_near_its_end(tmp_path, monkeypatch):
    """Several batches (BATCH is cut to 500) with a malformed line 10 rows from the end."""
    import tasks.data.pipeline as pipeline

    monkeypatch.setattr(pipeline, "BATCH", 500)
    path = tmp_path / "long.jsonl"
    lines = [json.dumps(chat(f"question number {i} about topic {i % 97}", f"answer {i} with words {i * 7}")) for i in range(3000)]
    lines[2990] = '{"messages": [ cut off'
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_line_near_the_end_of_a_long_file_names_it_and_writes_nothing(tmp_path, long_file_with_a_bad_line_near_its_end):
    cfg = _cfg([{"name": "long", "path": str(long_file_with_a_bad_line_near_its_end), "license": "MIT"}])
    with pytest.raises(DataError, match=r"long\.jsonl:2991: malformed JSON"):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["long.jsonl"]


def test_skip_mode_quarantines_the_bad_line_and_the_books_balance_on_disk(tmp_path, long_file_with_a_bad_line_near_its_end):
    cfg = _cfg([{"name": "long", "path": str(long_file_with_a_bad_line_near_its_end), "license": "MIT"}], on_bad_row="skip")
    out = prepare(cfg, tmp_path / "out")
    c = out.counts
    quarantine = read_jsonl(out.quarantine_path)
    assert c["rows_in"] == 3000 and c["dropped_bad_row"] == 1
    assert c["rows_in"] == c["rows_kept"] + sum(v for k, v in c.items() if k.startswith("dropped_")) == c["rows_kept"] + len(quarantine)
    assert len(read_jsonl(out.train_path)) + len(read_jsonl(out.validation_path)) == c["rows_kept"]
    assert [q["id"] for q in quarantine if q["reason"] == "bad_row"] == ["long:2991"]


def test_streamed_batches_give_the_same_data_as_one_batch(tmp_path, write_jsonl, monkeypatch):
    """Digest, counts and near-duplicate clusters do not depend on where batch boundaries fall."""
    import tasks.data.pipeline as pipeline

    story = "the lighthouse keeper counted ships every night and wrote their names in a worn blue notebook"
    rows = [chat(f"tell story {i % 40}", story + f" version {i % 40}" + (" again" if i % 3 == 0 else "")) for i in range(400)]
    path = write_jsonl("s.jsonl", rows)
    cfg = _cfg([{"name": "s", "path": str(path), "license": "MIT"}])
    whole = prepare(cfg, tmp_path / "whole")
    monkeypatch.setattr(pipeline, "BATCH", 37)
    batched = prepare(cfg, tmp_path / "batched")
    assert batched.digest == whole.digest and batched.counts == whole.counts and whole.counts["dropped_near_duplicate"] > 0
    report = lambda out: json.loads(out.report_path.read_text())["near_duplicates"]["clusters"]  # noqa: E731
    assert report(batched) == report(whole)


def test_labelled_texts_keep_their_labels_through_pii_and_dedup(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [
        {"text": "Please send the invoice copy to jane.roe@example.org, thanks", "label": "billing"},
        {"text": "How do I restore a single file from last night?", "label": "restore"},
        {"text": "how do I restore a single  file from LAST night?", "label": "restore"},  # exact dup once normalised
        {"text": "How do I restore a single file from last night?", "label": "billing"},  # same text, other label
        {"text": "The nightly snapshot fails with SVX-4012 on our S3 bucket", "label": "errors"},
        {"text": "Can we pay the annual plan by bank transfer instead of card?", "label": " billing "},
        {"text": "Which port does the agent need open for outbound traffic?", "label": 7},
    ])  # fmt: skip
    b = tmp_path / "b.csv"
    b.write_text("text,label\nOur upgrade from 3.2 to 3.4 stopped halfway through,upgrades\n"
                 "Is there a discount for nonprofits on the Pro edition?,billing\n", encoding="utf-8")  # fmt: skip
    seen_kinds = []
    cfg = _cfg([{"name": "a", "path": str(a), "license": "MIT"}, {"name": "b", "path": str(b), "license": "MIT"}],
               validation_fraction=0.25)  # fmt: skip
    out = prepare(cfg, tmp_path / "out", check_kind=seen_kinds.append)

    c = out.counts
    assert out.kind == "classification" and seen_kinds == ["classification"]
    assert (c["rows_in"], c["rows_kept"], c["dropped_exact_duplicate"]) == (9, 7, 2)
    assert (c["rows_train"], c["rows_validation"]) == (5, 2)
    written = read_jsonl(out.train_path) + read_jsonl(out.validation_path)
    assert all(set(r) == {"id", "source", "messages", "text", "label"} and r["messages"] == [] for r in written)
    labels = {r["id"]: r["label"] for r in written}
    assert labels == {"a:1": "billing", "a:2": "restore", "a:5": "errors", "a:6": "billing", "a:7": "7",
                      "b:2": "upgrades", "b:3": "billing"}  # fmt: skip
    email = next(r for r in written if r["id"] == "a:1")
    assert email["text"] == "Please send the invoice copy to <EMAIL>, thanks" and email["label"] == "billing"
    assert "jane.roe@example.org" not in "".join(p.read_text() for p in (out.train_path, out.validation_path, out.quarantine_path))
    quarantined = read_jsonl(out.quarantine_path)
    assert [(q["id"], q["reason"], q["detail"]) for q in quarantined] == [
        ("a:3", "exact_duplicate", "same normalised text as a:2"), ("a:4", "exact_duplicate", "same normalised text as a:2")]
    assert quarantined[1]["row"]["label"] == "billing"  # the dropped conflicting label stays visible
    report = json.loads(out.report_path.read_text())
    assert report["labels"] == out.labels and report["pii"]["found"] == {"EMAIL": 1}
    assert sum(out.labels["train"].values()) == c["rows_train"] and sum(out.labels["validation"].values()) == c["rows_validation"]
    merged = {k: out.labels["train"].get(k, 0) + out.labels["validation"].get(k, 0) for k in {*out.labels["train"], *out.labels["validation"]}}
    assert merged == {"billing": 3, "restore": 1, "errors": 1, "7": 1, "upgrades": 1}
    assert [e["column"] for e in report["validation"]["expectations"]][-2:] == ["label", "label"]


def test_labelled_near_duplicates_are_dropped_and_other_kinds_have_no_label_counts(tmp_path, write_jsonl):
    base = "After the upgrade every nightly snapshot of the database host fails with a timeout talking to the vault"
    a = write_jsonl("a.jsonl", [{"text": base, "label": "errors"},
                                {"text": base.replace("nightly", "daily"), "label": "errors"},  # one word edited
                                {"text": "Can I get an invoice with our company tax number on it?", "label": "billing"}])  # fmt: skip
    out = prepare(_cfg([{"name": "a", "path": str(a), "license": "MIT"}], validation_fraction=0.0), tmp_path / "out")
    assert out.counts["dropped_near_duplicate"] == 1 and out.labels == {"train": {"billing": 1, "errors": 1}, "validation": {}}
    (entry,) = read_jsonl(out.quarantine_path)
    assert entry["id"] == "a:2" and entry["detail"]["kept"] == "a:1" and entry["row"]["label"] == "errors"
    t = write_jsonl("t.jsonl", [{"text": "plain text row one"}, {"text": "another plain text row"}])
    plain = prepare(_cfg([{"name": "t", "path": str(t), "license": "MIT"}]), tmp_path / "plain")
    assert plain.kind == "text" and plain.labels is None and "labels" not in json.loads(plain.report_path.read_text())
