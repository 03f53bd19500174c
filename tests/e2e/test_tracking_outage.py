"""A real `mlflow server` dies during training: the stage fails within the outage budget with a clear message, the
checkpoints stay, and a re-run after the server is back resumes the same MLflow run from the checkpoint."""
import threading
import time

import pytest
from mlflow import MlflowClient

import tasks.tracking
from flows.finetune import finetune
from tests.helpers import free_port, mlflow_server
from tests.unit.flows.test_finetune import tiny_config

pytestmark = pytest.mark.e2e
BUDGET_S = 10.0


def _kill_after_first_checkpoint(server, run_root, killed: dict):
    while server.proc.poll() is None:
        if list(run_root.glob("runs/*/train/**/checkpoint-4")):
            server.stop()
            killed["at"] = time.monotonic()
            return
        time.sleep(0.1)


def test_a_tracking_outage_mid_training_fails_fast_and_the_rerun_resumes(tmp_path, tiny_model_dir, prefect_harness,
                                                                          monkeypatch):
    monkeypatch.setattr(tasks.tracking, "OUTAGE_BUDGET_S", BUDGET_S)  # the real budget is 60 s; same code path
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    port, root = free_port(), tmp_path / "mlflow"
    root.mkdir()
    uri = f"http://127.0.0.1:{port}"
    config = tiny_config(tmp_path, tiny_model_dir, uri, extra=[
        "train.max_steps=60", "train.epochs=50", "train.save_steps=4", "train.logging_steps=1", "eval.general_text_rows=4"])

    server, killed = mlflow_server(root, port).start(), {}
    watcher = threading.Thread(target=_kill_after_first_checkpoint, args=(server, tmp_path / "runs", killed))
    watcher.start()
    with pytest.raises(Exception) as failure:
        finetune(config)
    failed_at = time.monotonic()
    watcher.join()
    assert "at" in killed, "training finished before the server was killed"
    assert failed_at - killed["at"] < BUDGET_S + 30  # bounded: not minutes of backoff per call
    assert f"MLflow tracking server {uri} has not answered" in str(failure.value)
    assert list((tmp_path / "runs").glob("runs/*/train/**/checkpoint-*"))  # the checkpoints are kept

    with mlflow_server(root, port):  # the server is back: the same command resumes the same run
        client = MlflowClient(uri)
        (before,) = client.search_runs([client.get_experiment_by_name("tuneforge").experiment_id])
        assert before.info.status == "RUNNING"  # never marked FAILED: the server was away when it failed
        result = finetune(config)
        assert result["mlflow_run_id"] == before.info.run_id
        run = client.get_run(before.info.run_id)
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert steps.count(1) == 1 and max(steps) == 60  # resumed from the checkpoint, not from step 0
