"""The knowledge-transfer recipes through the finetune flow on the tiny model: data prep, training, their own
evaluation, packaging and (for the classifier) the registry; continual learning's chain and its forgetting table."""
import json

from mlflow import MlflowClient

from flows.chain import chain
from flows.finetune import finetune
from tasks.config import load_config
from tests.unit.flows.test_finetune import tiny_config

TOPICS = {"billing": ["invoice", "refund", "charge", "receipt"], "install": ["package", "apt", "setup", "binary"],
          "restore": ["snapshot", "recover", "rollback", "undelete"], "network": ["proxy", "firewall", "port", "dns"],
          "license": ["seat", "activation", "key", "renewal"], "alerts": ["email", "webhook", "notify", "pager"]}


def write_tickets(path, per_topic=24):
    """Distinct tickets whose topic shows in a keyword (no near duplicates for the data stage to drop)."""
    with open(path, "w") as f:
        for label, words in TOPICS.items():
            for i in range(per_topic):
                text = f"ticket {label[:2]}{i * 7919 % 1000}: my {words[i % 4]} {words[(i // 4) % 4]} issue, case {i}"
                f.write(json.dumps({"text": text, "label": label}) + "\n")
    return path


def test_classifier_goes_through_the_flow_and_registers(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness):
    import mlflow

    data = write_tickets(tmp_path / "tickets.jsonl")
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, conf="conf/smollm2/classify.yaml", extra=[
        f"data.sources=[{{name: t, path: {data}, license: MIT}}]", "data.validation_fraction=0.25",
        "train.max_steps=40", "train.learning_rate=0.01", "train.transfer.layer_wise_lr={}",
        f"eval.independent_test={data}", "package.registered_model_name=tiny-classifier",
        "package.champion_metrics={classify_accuracy: max}"])
    result = finetune(config)
    client = MlflowClient(mlflow_uri)
    metrics = client.get_run(result["mlflow_run_id"]).data.metrics
    assert metrics["eval/tuned/classify_accuracy_ci_low"] > metrics["eval/tuned/classify_majority_baseline"]
    for key in ("classify_macro_f1", "classify_macro_f1_ci_low", "classify_independent_accuracy"):
        assert f"eval/tuned/{key}" in metrics, key
    version = client.get_model_version("tiny-classifier", result["registered_version"])
    assert version.tags["kind"] == "classifier"
    classifier = mlflow.pyfunc.load_model(f"models:/tiny-classifier/{result['registered_version']}")
    assert set(classifier.predict(["my refund invoice issue", "apt package setup"])) <= set(TOPICS)


def test_fewshot_goes_through_the_flow(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness):
    data = write_tickets(tmp_path / "tickets.jsonl")
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, conf="conf/smollm2/fewshot.yaml", extra=[
        f"data.sources=[{{name: t, path: {data}, license: MIT}}]", "train.max_steps=6", "train.learning_rate=0.003",
        "train.fewshot={n_ways: 2, n_shots: 2, n_queries: 3, meta_batch_size: 1, held_out_classes: 2, "
        "eval_episodes: 20}", "package.champion_metrics={}"])
    result = finetune(config)
    metrics = MlflowClient(mlflow_uri).get_run(result["mlflow_run_id"]).data.metrics
    assert metrics["eval/tuned/fewshot_chance"] == 0.5
    for key in ("fewshot_acc_base", "fewshot_acc_tuned", "fewshot_acc_delta_ci_low"):
        assert f"eval/tuned/{key}" in metrics, key


def test_distillation_goes_through_the_flow(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness):
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, conf="conf/smollm2/distill.yaml",
                         extra=["train.max_steps=4", "train.learning_rate=0.001", "package.champion_metrics={}"])
    result = finetune(config)
    metrics = MlflowClient(mlflow_uri).get_run(result["mlflow_run_id"]).data.metrics
    assert metrics["eval/tuned/distill_params_student"] < metrics["eval/tuned/distill_params_teacher"]
    low, high = (metrics[f"eval/tuned/distill_loglik_delta_vs_sft_ci_{s}"] for s in ("low", "high"))
    assert low <= metrics["eval/tuned/distill_loglik_delta_vs_sft"] <= high


def test_continual_chain_writes_the_forgetting_table(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness):
    from tests.unit.flows.test_finetune import write_data

    triage = tmp_path / "triage.jsonl"
    triage.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": json.loads(line)["text"]},
        {"role": "assistant", "content": json.loads(line)["label"]}]}) + "\n"
        for line in write_tickets(tmp_path / "tickets.jsonl", 8).read_text().splitlines()))
    support = write_data(tmp_path / "support.jsonl")
    common = [f"model.name_or_path={tiny_model_dir}", f"run_root={tmp_path / 'runs'}",
              f"tracking.tracking_uri={mlflow_uri}", "data.decontamination.enabled=false", "train.max_steps=3",
              "train.learning_rate=0.01", "eval.benchmarks.enabled=false", "eval.drift.max_drop={}",
              "eval.sample_generations=1", "eval.max_new_tokens=4", "eval.perplexity_max_rows=6",
              f"data.sources=[{{name: s, path: {support}, license: MIT}}]",
              f"stages.task_a.data.sources=[{{name: t, path: {triage}, license: MIT}}]"]
    config = load_config("conf/smollm2/continual.yaml", common)
    result = chain(config)
    rows = json.loads(next((tmp_path / "runs").rglob("forgetting.json")).read_text())
    assert [r["strategy"] for r in rows] == ["naive", "ewc", "replay", "lwf"]
    for r in rows:
        assert r["prev_task_loglik"]["ci_low"] <= r["prev_task_loglik"]["delta"] <= r["prev_task_loglik"]["ci_high"]
        assert "prev_task_accuracy" in r
    artifacts = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(result["mlflow_run_id"], "forgetting")}
    assert "forgetting/forgetting.png" in artifacts
