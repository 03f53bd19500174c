"""`make pipeline` in miniature: the real SmolLM2 through every stage, asserted on the MLflow run it leaves."""
import mlflow
import pytest
from mlflow import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from flows.finetune import finetune
from tasks.config import load_config

pytestmark = pytest.mark.e2e


def test_pipeline_on_real_model(tmp_path, mlflow_uri, shared_data):
    config = load_config("conf/smollm2/lora.yaml", [
        f"run_root={tmp_path / 'runs'}", f"tracking.tracking_uri={mlflow_uri}",
        f"data.decontamination.benchmarks_dir={shared_data}", f"eval.benchmarks.data_dir={shared_data}",
        "train.max_steps=12", "train.logging_steps=2", "train.save_steps=6",
        "eval.benchmarks.mmlu_per_subject=1", "eval.benchmarks.mmlu_forms=[cloze]", "eval.benchmarks.truthfulqa_limit=30",
        "eval.perplexity_max_rows=24", "eval.sample_generations=1", "eval.max_new_tokens=24",
        "eval.drift.max_drop={mmlu_cloze: 0.05, truthfulqa_mc2: 0.05}",
    ])
    with prefect_test_harness(server_startup_timeout=120):
        result = finetune(config)

    client = MlflowClient(mlflow_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    assert params["model.name_or_path"] == "embedded:smollm2-135m-instruct" and params["train.method"] == "lora"
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert len(losses) >= 5 and min(losses[-2:]) < losses[0]  # loss goes down
    for name in ("train/learning_rate", "train/grad_norm", "train/tokens_per_second"):
        assert client.get_metric_history(run.info.run_id, name), name
    # fine-tuning on the domain data lowers domain perplexity
    assert metrics["eval/tuned/perplexity"] < metrics["eval/base/perplexity"]
    for name in ("mmlu_cloze", "truthfulqa_mc1", "truthfulqa_mc2"):
        assert 0.0 < metrics[f"eval/base/{name}"] < 1.0
    assert metrics["data/rows_in"] == metrics["data/rows_kept"] + sum(
        v for k, v in metrics.items() if k.startswith("data/dropped_"))
    assert metrics["data/rows_in"] > metrics["data/rows_kept"]  # the demo set's duplicates and contamination go
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest

    version = client.get_model_version_by_alias("smollm2-support-lora", "champion")
    assert version.run_id == run.info.run_id and version.tags["method"] == "lora"
    model = mlflow.pyfunc.load_model("models:/smollm2-support-lora@champion")
    (reply,) = model.predict(["How do I restore a snapshot?"], params={"max_new_tokens": 12})
    assert isinstance(reply, str) and reply.strip()
