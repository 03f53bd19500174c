import json

from mlflow import MlflowClient

from tasks.tracking import RunLogger
from tests.helpers import free_port


def test_new_run_then_resume_after_failure(mlflow_uri, tmp_path):
    first, resumed = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "digest-a", tmp_path)
    assert not resumed
    first.finish(False, reason="boom")
    again, resumed = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "digest-a", tmp_path)
    assert resumed and again.run_id == first.run_id
    run = MlflowClient(mlflow_uri).get_run(first.run_id)
    assert run.info.status == "RUNNING" and run.data.tags["failure_reason"] == "boom"


def test_finished_or_different_config_starts_new_run(mlflow_uri, tmp_path):
    a, _ = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "digest-a", tmp_path)
    a.finish(True)
    b, resumed = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "digest-a", tmp_path)
    c, _ = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "digest-b", tmp_path)
    assert not resumed and len({a.run_id, b.run_id, c.run_id}) == 3


def test_params_metrics_and_dataset(mlflow_uri, tmp_path):
    logger, _ = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "d", tmp_path)
    logger.log_params({"a.b": 1, "c": "x"})
    logger.log_params({"a.b": 1, "new": 2})  # re-logging on resume must not fail
    logger.log_metrics({"loss": 2.5, "skip": float("nan"), "flag": True}, step=3)
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": str(i)}]}) for i in range(5)))
    logger.log_dataset(data, "train", "abc123", "training")
    run = MlflowClient(mlflow_uri).get_run(logger.run_id)
    assert run.data.params == {"a.b": "1", "c": "x", "new": "2"}
    assert run.data.metrics == {"loss": 2.5}
    inputs = run.inputs.dataset_inputs
    assert inputs[0].dataset.name == "train" and inputs[0].dataset.digest == "abc123"
    assert inputs[0].tags[0].value == "training"


def test_a_tracking_server_that_is_not_there_fails_at_once_naming_the_uri():
    import time

    import pytest

    from tasks.tracking import TrackingUnavailable, check_tracking_server

    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=f"{uri} is not reachable"):
        check_tracking_server(uri)
    assert time.monotonic() - start < 15
    check_tracking_server("sqlite:///nowhere.db")  # local stores need no server


def test_an_outage_spends_one_bounded_budget_not_one_per_call(monkeypatch):
    """Real MLflow calls against a dead port: the first call retries until the budget is spent, later calls of the
    same outage (any RunLogger, e.g. finish(False)) try once and fail fast; an answer resets the budget."""
    import time

    import pytest

    import tasks.tracking as tracking

    monkeypatch.setattr(tracking, "OUTAGE_BUDGET_S", 3.0)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(tracking.TrackingUnavailable, match="has not answered"):
        tracking.RunLogger("0" * 32, uri).log_metrics({"loss": 1.0})
    first = time.monotonic() - start
    assert 3.0 <= first < 8.0

    start = time.monotonic()
    with pytest.raises(tracking.TrackingUnavailable):
        tracking.RunLogger("0" * 32, uri).finish(False, reason="boom")
    assert time.monotonic() - start < 2.0  # the budget was spent once, not once per call

    tracking._Outages.answered(uri)  # a call that succeeds ends the outage: the next one gets a fresh budget
    assert uri not in tracking._Outages.spent and uri not in tracking._Outages.since


def test_the_same_run_folder_cannot_be_held_twice_and_is_freed_when_its_process_dies(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import pytest

    from tasks.tracking import RunFolderBusy, run_folder_lock

    run_dir = tmp_path / "run"
    with run_folder_lock(run_dir, "abc"):
        with pytest.raises(RunFolderBusy, match=r"run abc of this config is already running \(pid \d+\)"):
            with run_folder_lock(run_dir, "abc"):
                pass
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from tasks.tracking import run_folder_lock\n"
        f"with run_folder_lock(Path({str(run_dir)!r}), 'abc'):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
        with run_folder_lock(run_dir, "abc"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    time.sleep(0.1)
    with run_folder_lock(run_dir, "abc"):  # the kernel dropped the dead process's lock: the run can resume
        pass
