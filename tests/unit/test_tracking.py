import json

from mlflow import MlflowClient

from tasks.tracking import RunLogger


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
