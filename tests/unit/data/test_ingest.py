import pytest

from tasks.data.config import SourceConfig
from tasks.data.errors import DataError
from tasks.data.ingest import SourceRows, kind_of
from tasks.data.ledger import Ledger
from tests.unit.data.conftest import chat


def _ingest(path, on_bad_row="error", **kw):
    ledger = Ledger()
    source = SourceRows(SourceConfig(name="s", path=str(path), **kw), on_bad_row, ledger)
    rows = list(source)
    return rows, source.format, ledger


@pytest.mark.parametrize("lines, where, message", [
    ([chat("a", "b"), '{"messages": [oops'], ":2", "malformed JSON"),
    ([chat("a", "b"), {"messages": [{"role": "user", "content": "only a question"}]}], ":2", "must end with"),
    ([{"prompt": "p", "chosen": "same", "rejected": "same"}], ":1", "chosen equals rejected"),
    ([{"instruction": "a", "output": "b"}, {"instruction": "do it"}], ":2", "missing required field 'output'"),
])  # fmt: skip
def test_bad_rows_raise_naming_file_and_line(write_jsonl, lines, where, message):
    path = write_jsonl("in.jsonl", lines)
    with pytest.raises(DataError, match=message) as err:
        _ingest(path)
    assert f"{path}{where}: " in str(err.value) and "source 's'" in str(err.value)


def test_wrong_encoding_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "na\xefve"}\n')
    with pytest.raises(DataError, match=rf"{path}:2: not valid UTF-8"):
        _ingest(path)


def test_file_not_in_declared_format_says_what_it_looks_like(write_jsonl):
    path = write_jsonl("chat.jsonl", [chat("a", "b")])
    with pytest.raises(DataError, match=r"chat.jsonl:1: missing required field 'instruction' \(expected format 'alpaca', this row looks like 'messages'\)"):
        _ingest(path, format="alpaca")


def test_skip_mode_quarantines_bad_rows_with_id_and_reason(write_jsonl):
    path = write_jsonl("in.jsonl", [chat("a", "b"), "not json", {"prompt": "p", "completion": "c"}, chat("c", "d")])
    rows, fmt, ledger = _ingest(path, on_bad_row="skip")
    assert fmt == "messages" and [r["id"] for r in rows] == ["s:1", "s:4"]
    assert ledger.rows_in == 4 and ledger.dropped == {"bad_row": 2}
    assert [(q["id"], q["reason"]) for q in ledger.quarantine] == [("s:2", "bad_row"), ("s:3", "bad_row")]
    assert "malformed JSON" in ledger.quarantine[0]["detail"]
    assert "looks like 'prompt_completion'" in ledger.quarantine[1]["detail"]


def test_hh_rlhf_real_file_ingests_with_thirteen_malformed_pairs_quarantined(shared_data):
    rows, fmt, ledger = _ingest(shared_data / "hh-rlhf/harmless-base/test.jsonl.gz", on_bad_row="skip")
    assert fmt == "hh_rlhf" and ledger.rows_in == 2312 and len(rows) == 2299
    assert ledger.dropped == {"bad_row": 13}
    assert all(r["messages"][-1]["role"] == "user" and r["chosen"] != r["rejected"] for r in rows)


def test_sources_of_different_kinds_cannot_be_mixed():
    assert kind_of({"a": "alpaca", "b": "sharegpt"}) == "sft"
    with pytest.raises(DataError, match="mix dataset kinds"):
        kind_of({"a": "alpaca", "b": "hh_rlhf"})
    assert kind_of({"a": "labelled"}) == "classification"
    with pytest.raises(DataError, match="mix dataset kinds"):
        kind_of({"a": "labelled", "b": "text"})
