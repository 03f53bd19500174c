"""`data.engine: dask` writes the local engine's output byte for byte, on a LocalCluster of 2 worker processes.

The input is the real demo set (PII, exact and near duplicates, one MMLU-contaminated row) plus a second source:
the first 100 rows of the second demo split (duplicates of the first across sources), bad rows and PII rows dropped
by config in both of its batches, and weight 2 (upsampling). Batches of 64 rows make the run cross batch
boundaries, read ahead (a batch's bad rows are read before the previous batch's drops are written) and split every
batch into partitions, so the order partitions come back in and the state carried between batches both count.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.data import pipeline
from tasks.data.config import DataConfig
from tasks.data.engine import Batch, DaskEngine
from tasks.data.errors import DataError
from tasks.data.filter import RowScanner
from tasks.data.ledger import Ledger
from tasks.data.pipeline import prepare
from tests.unit.data.conftest import chat

DEMO = Path(__file__).resolve().parents[3] / "conf/data"
BAD = '{"messages": [{"role": "user", "content": "cut off'


@pytest.fixture()
def sources(tmp_path, shared_data, write_jsonl):
    bench = tmp_path / "bench"
    (bench / "mmlu" / "test").mkdir(parents=True)
    shutil.copy(shared_data / "mmlu/test/high_school_geography_test.csv", bench / "mmlu/test/")  # demo_support:53
    demo = (DEMO / "demo_support.jsonl").read_text(encoding="utf-8").splitlines()
    second = (DEMO / "demo_support_b.jsonl").read_text(encoding="utf-8").splitlines()[:100]
    extra = write_jsonl("extra.jsonl", [
        chat("my ssn is 536-22-1234, keep it", "Noted, but please do not share it."),  # PII, dropped by config
        BAD,  # quarantined as a bad row
        chat("Email me at jane.roe@example.org about the vault", "I will send the steps there."),  # PII, redacted
        demo[1],  # exact duplicate of demo_support:2
        *second,
        BAD,  # in the second batch
        chat("and my SSN is 078-05-1121", "Please do not share it."),
    ])  # fmt: skip
    return {
        "sources": [{"name": "demo_support", "path": str(DEMO / "demo_support.jsonl"), "license": "Apache-2.0"},
                    {"name": "extra", "path": str(extra), "license": "Apache-2.0", "weight": 2.0}],
        "on_bad_row": "skip", "pii": {"actions": {"US_SSN": "drop"}},
        "decontamination": {"benchmarks_dir": str(bench), "benchmarks": ["mmlu"]},
        "validation": {"data_docs": False},  # great-expectations' HTML carries the run's time stamp
    }  # fmt: skip


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _report_without_run_facts(raw: bytes) -> dict:
    """The report less what differs between any two runs (timings) and the engine's own config keys."""
    report = json.loads(raw)
    del report["timings_s"], report["config"]["engine"], report["config"]["dask"]
    return report


def test_dask_engine_output_is_byte_identical_to_local(tmp_path, sources, monkeypatch):
    monkeypatch.setattr(pipeline, "BATCH", 64)
    local = prepare(DataConfig.model_validate(sources), tmp_path / "local")

    def no_scanning_here(self, rows, sketch=False):
        raise AssertionError("engine dask scanned rows in the driver process")

    monkeypatch.setattr(RowScanner, "scan", no_scanning_here)  # the workers are other processes: unaffected
    dask = prepare(DataConfig.model_validate(sources | {"engine": "dask", "dask": {"n_workers": 2}}), tmp_path / "dask")

    one, two = _files(tmp_path / "local"), _files(tmp_path / "dask")
    assert sorted(one) == sorted(two) == ["quarantine.jsonl", "report.json", "train.jsonl", "validation.jsonl"]
    for name in ("train.jsonl", "validation.jsonl", "quarantine.jsonl"):
        assert one[name] == two[name], name
    assert _report_without_run_facts(one["report.json"]) == _report_without_run_facts(two["report.json"])
    assert (local.digest, local.counts) == (dask.digest, dask.counts)

    c = dask.counts
    assert c["rows_in"] == 374 + 106
    assert c["rows_in"] == c["rows_kept"] + sum(n for k, n in c.items() if k.startswith("dropped_"))
    assert (c["dropped_bad_row"], c["dropped_pii"], c["dropped_contaminated"]) == (2, 2, 1)
    assert c["dropped_exact_duplicate"] >= 12 and c["dropped_near_duplicate"] >= 3  # 11 and 3 within the demo set
    assert c["rows_train"] + c["rows_validation"] == c["rows_kept"] + c["rows_upsampled"] and c["rows_upsampled"] > 0
    written = two["train.jsonl"] + two["validation.jsonl"] + two["quarantine.jsonl"]
    assert b"jane.roe@example.org" not in written and b"536-22-1234" not in written and b"<EMAIL>" in written
    extra = [(int(q["id"].split(":")[1]), q["reason"]) for q in map(json.loads, two["quarantine.jsonl"].splitlines())
             if q["source"] == "extra"]  # fmt: skip
    assert extra[:3] == [(2, "bad_row"), (1, "pii"), (4, "exact_duplicate")]  # as read, then as filtered
    # the second batch (lines 66-106) was read, bad row included, before the first batch's drops were written:
    # they still come first
    at = extra.index((105, "bad_row"))
    assert all(line <= 65 for line, _ in extra[:at]) and all(line > 65 for line, _ in extra[at:])
    assert (106, "pii") in extra


class _Inline(DaskEngine):
    """DaskEngine's read-ahead with the cluster taken out: a batch's "futures" are its rows, gathered as they are."""

    def __init__(self) -> None:
        self.submitted: list[int] = []

    def _submit(self, rows):
        self.submitted.append(len(rows))
        return rows

    def _gather(self, futures, rows):
        return futures


def test_read_ahead_hands_batches_back_in_order_and_holds_a_read_error_until_their_turn():
    def batches():
        yield Batch([{"id": "a:1"}], "messages", Ledger())
        yield Batch([{"id": "a:2"}], "messages", Ledger())
        raise DataError("a.jsonl:3: not JSON")

    engine, seen = _Inline(), []
    with pytest.raises(DataError, match="a.jsonl:3"):
        for batch, scanned in engine.scan(batches()):
            assert scanned == batch.rows
            seen.append((batch.rows[0]["id"], list(engine.submitted)))
    assert seen == [("a:1", [1, 1]), ("a:2", [1, 1])]  # both read before the first came back; the error after both


def test_a_failure_on_a_worker_names_the_rows_and_leaves_nothing(tmp_path, sources):
    import dask
    from distributed import Client, LocalCluster

    with (dask.config.set({"temporary-directory": str(tmp_path / "scratch")}),
          LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client):

        def break_the_scanner():  # runs in the worker process (a nested function travels by value)
            from tasks.data import engine

            def scanner(*_):
                raise RuntimeError("recognizer exploded")

            engine._worker_scanner = scanner

        client.run(break_the_scanner)
        cfg = DataConfig.model_validate(sources | {"engine": "dask", "dask": {"address": cluster.scheduler_address}})
        expected = (r"^data.engine=dask: a worker failed scanning rows demo_support:1 to demo_support:\d+ "
                    r"of source 'demo_support': RuntimeError: recognizer exploded$")
        with pytest.raises(DataError, match=expected):
            prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("patch", "message"), [
    ({"engine": "spark"}, "Input should be 'local' or 'dask'"),
    ({"dask": {"address": "localhost"}}, "data.dask.address is not a Dask scheduler address: use tcp://HOST:PORT"),
    ({"dask": {"n_workers": 0}}, "greater than or equal to 1"),
    ({"dask": {"address": "tcp://10.0.0.5:8786", "n_workers": 4}},
     "data.dask.n_workers sizes the LocalCluster started when data.dask.address is null"),
])  # fmt: skip
def test_engine_config_is_validated_with_the_key_named(patch, message):
    with pytest.raises(ValidationError, match=message):
        DataConfig.model_validate({"sources": [{"name": "a", "path": "x"}]} | patch)


def test_engine_defaults_and_a_remote_address_load():
    cfg = DataConfig.model_validate({"sources": [{"name": "a", "path": "x"}]})
    assert (cfg.engine, cfg.dask.address, cfg.dask.n_workers) == ("local", None, 2)
    remote = DataConfig.model_validate({"sources": [{"name": "a", "path": "x"}], "engine": "dask",
                                        "dask": {"address": "tcp://10.0.0.5:8786"}})  # fmt: skip
    assert (remote.engine, remote.dask.address) == ("dask", "tcp://10.0.0.5:8786")


def test_the_local_engine_does_not_import_dask():
    code = ("import sys, tasks.data.pipeline\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
