import gzip
import json

import pytest

from tasks.data.config import SourceConfig
from tasks.data.errors import DataError
from tasks.data.read import iter_records

ROWS = [{"prompt": "2+2?", "completion": "4"}, {"prompt": "3+3?", "completion": "6"}]


def _records(path, **kw):
    return list(iter_records(SourceConfig(name="s", path=str(path), **kw)))


def test_jsonl_gz_json_csv_parquet_give_the_same_rows_with_located_ids(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
    (tmp_path / "b.json").write_text(json.dumps({"data": ROWS}))
    (tmp_path / "c.csv").write_text('prompt,completion\n2+2?,4\n"3+3?",6\n')
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    for name, first_id in [("a.jsonl.gz", "s:1"), ("b.json", "s:0"), ("c.csv", "s:2"), ("d.parquet", "s:0")]:
        recs = _records(tmp_path / name)
        assert [r.data for r in recs] == ROWS, name
        assert recs[0].id == first_id and recs[0].where.startswith(str(tmp_path / name))


def test_folder_reads_every_file_sorted_with_relative_ids_and_max_rows(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.jsonl").write_text(json.dumps(ROWS[1]) + "\n")
    (tmp_path / "d" / "sub" / "a.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    assert [r.id for r in _records(tmp_path / "d")] == ["s:b.jsonl:1", "s:sub/a.jsonl:1"]
    assert len(_records(tmp_path / "d", max_rows=1)) == 1


def test_malformed_line_and_bad_utf8_become_error_records_with_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": broken\n\n{"text": "caf\xe9"}\n[1, 2]\n')
    recs = _records(path)
    assert [(r.id, r.data is None) for r in recs] == [("s:1", False), ("s:2", True), ("s:4", True), ("s:5", True)]
    assert "malformed JSON" in recs[1].error and "UTF-8" in recs[2].error and "JSON object" in recs[3].error


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"  \n\n", "empty file")])
def test_empty_file_raises_naming_it(tmp_path, content, message):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"empty.jsonl: {message}"):
        _records(path)


def test_missing_file_and_bad_json_document_raise(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _records(tmp_path / "nope.jsonl")
    (tmp_path / "x.json").write_text('{"a": 1,\n "b": }')
    with pytest.raises(DataError, match=r"x.json:2: malformed JSON"):
        _records(tmp_path / "x.json")
    (tmp_path / "latin1.csv").write_bytes(b"text\nna\xefve\n")
    with pytest.raises(DataError, match=r"latin1.csv:2: not valid UTF-8"):
        _records(tmp_path / "latin1.csv")


def test_hf_dataset_saved_to_disk_reads_the_configured_split(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])})
    dd.save_to_disk(str(tmp_path / "hf"))
    assert [r.data for r in _records(tmp_path / "hf")] == ROWS
    assert [r.id for r in _records(tmp_path / "hf", split="test")] == ["s:0"]
    with pytest.raises(DataError, match="split 'dev' not found"):
        _records(tmp_path / "hf", split="dev")
