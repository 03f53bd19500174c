import csv
import shutil

from tasks.data.config import DataConfig
from tasks.data.filter import RowFilter
from tasks.data.ledger import Ledger

STORY = ("once upon a time a small robot learned to paint the sunrise over the quiet harbour every single "
         "morning while the fishermen prepared their boats and nets for the long day at sea")  # fmt: skip


def _row(i, user, assistant):
    return {"id": f"s:{i}", "source": "s", "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def test_each_filter_drops_its_rows_in_order_and_reports(tmp_path, shared_data):
    (tmp_path / "mmlu" / "dev").mkdir(parents=True)
    shutil.copy(shared_data / "mmlu/dev/astronomy_dev.csv", tmp_path / "mmlu/dev/")
    question = max((r[0] for r in csv.reader(open(tmp_path / "mmlu/dev/astronomy_dev.csv", encoding="utf-8"))), key=len)
    rows = [
        _row(1, "Tell me a story", STORY),
        _row(2, "tell me a STORY", STORY),  # exact duplicate of 1
        _row(3, "Tell me a story", STORY + " the end"),  # near duplicate of 1
        _row(4, question, "B"),  # contaminated
        _row(5, "my ssn is 536-22-1234", "noted"),  # PII, dropped by config
        _row(6, "What is the boiling point of water at sea level?", "100 degrees Celsius."),
    ]
    cfg = DataConfig(sources=[{"name": "s", "path": "x"}], pii={"actions": {"US_SSN": "drop"}},
                     decontamination={"benchmarks_dir": str(tmp_path), "benchmarks": ["mmlu"]})  # fmt: skip
    ledger = Ledger()
    ledger.rows_in = len(rows)
    filters = RowFilter(cfg, ledger)
    kept = filters.run(rows[:3])[0] + filters.run(rows[3:])[0]  # two batches: state carries over
    report = filters.report()
    assert [r["id"] for r in kept] == ["s:1", "s:6"]
    assert ledger.dropped == {"pii": 1, "exact_duplicate": 1, "near_duplicate": 1, "contaminated": 1}
    assert ledger.counts(len(kept))["rows_in"] == 6
    ((cluster),) = report["near_duplicates"]["clusters"]
    assert cluster["kept"] == "s:1" and [m["id"] for m in cluster["removed"]] == ["s:3"]
    assert 0.5 <= cluster["removed"][0]["jaccard"] < 1 and 0 < cluster["removed"][0]["estimated"] <= 1
    (hit,) = report["decontamination"]["dropped"]
    assert hit["id"] == "s:4" and hit["benchmark"].startswith("mmlu/dev/astronomy_dev.csv:") and len(hit["ngram"].split()) == 13
    assert report["pii"]["found"] == {"US_SSN": 1}
    by_id = {q["id"]: q for q in ledger.quarantine}
    assert "536-22-1234" not in str(by_id["s:5"]) and by_id["s:2"]["detail"] == "same normalised text as s:1"
