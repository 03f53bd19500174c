"""What makes a run's MLflow page useful: the experiment opened as model training, system metrics, tables."""
import time

from mlflow import MlflowClient

from tasks.tracking import (EXPERIMENT_KIND_TAG, RunLogger, _SystemMetrics, mark_training_experiment,
                            ui_url)


def test_experiment_is_marked_as_model_training_unless_a_kind_was_chosen(mlflow_uri):
    client = MlflowClient(mlflow_uri)
    exp = client.create_experiment("fresh")
    mark_training_experiment(client, exp)
    assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    inferred = client.create_experiment("inferred", tags={EXPERIMENT_KIND_TAG: "genai_development_inferred"})
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for e in (inferred, chosen):
        mark_training_experiment(client, e)
    assert client.get_experiment(inferred).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_ui_links_open_the_model_training_pages():
    assert ui_url("3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert ui_url("3", base="http://h:8080/") == "http://h:8080/#/experiments/3?workflowType=machine_learning"


def _system(client, run_id):
    return {k for k in client.get_run(run_id).data.metrics if k.startswith("system/")}


def test_system_metrics_reach_the_run_and_stop_with_the_last_holder(mlflow_uri, tmp_path):
    logger, _ = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "d", tmp_path)
    client = MlflowClient(mlflow_uri)
    logger.start_system_metrics(interval_s=0.2)
    RunLogger(logger.run_id, mlflow_uri).start_system_metrics(interval_s=0.2)  # another stage's logger: shared
    time.sleep(1.5)
    logger.stop_system_metrics()
    monitor = _SystemMetrics.active[logger.run_id][0]
    assert monitor._process.is_alive()  # one holder left
    logger.stop_system_metrics()
    assert logger.run_id not in _SystemMetrics.active and not monitor._process
    keys = _system(client, logger.run_id)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
            "system/system_memory_usage_percentage"} <= keys
    steps = [m.step for m in client.get_metric_history(logger.run_id, "system/system_memory_usage_megabytes")]
    assert len(steps) >= 3 and steps == sorted(set(steps))
    logger.stop_system_metrics()  # one stop too many is harmless


def test_a_stage_shorter_than_one_interval_still_leaves_a_sample_and_a_resume_appends(mlflow_uri, tmp_path):
    logger, _ = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "d", tmp_path)
    client = MlflowClient(mlflow_uri)
    start = time.monotonic()
    with logger.system_metrics(interval_s=60):
        pass
    assert time.monotonic() - start < 10  # stopping does not wait out the interval
    with logger.system_metrics(interval_s=60):
        pass
    steps = [m.step for m in client.get_metric_history(logger.run_id, "system/cpu_utilization_percentage")]
    assert steps == [0, 1]


def test_a_table_is_logged_as_an_mlflow_table_and_replaced_on_a_rerun(mlflow_uri, tmp_path):
    logger, _ = RunLogger.start_or_resume(mlflow_uri, "exp", "r", "d", tmp_path)
    rows = [{"prompt": "How?", "base": "no idea", "tuned": "Run `x`."},
            {"prompt": "Where?", "base": "?", "tuned": "/var"}]
    logger.log_table(rows, "eval/generations.json")
    logger.log_table(rows, "eval/generations.json")  # a re-run of the stage
    client = MlflowClient(mlflow_uri)
    run = client.get_run(logger.run_id)
    assert run.data.tags["mlflow.loggedArtifacts"] == '[{"path": "eval/generations.json", "type": "table"}]'
    table = client.load_table(run.info.experiment_id, "eval/generations.json", run_ids=[logger.run_id])
    assert table[["prompt", "base", "tuned"]].to_dict("records") == rows
