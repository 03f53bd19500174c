"""The flow on the tiny model: one MLflow run, every stage logged; a re-run after a failure skips finished stages."""
import json

import pytest
from mlflow import MlflowClient
import tasks.evaluate
import tasks.training.sft
from flows.finetune import finetune
from tasks.config import load_config
from tests.helpers import build_tiny_reward_model


ACTIONS = [("rotate the key of", "rotate"), ("restore the latest snapshot of", "restore"), ("pause syncing for", "pause"),
           ("rename", "rename"), ("export the audit log of", "export-log"), ("add a teammate to", "share"),
           ("move to another region", "migrate"), ("verify the backups of", "verify")]  # fmt: skip
THINGS = ["vault", "archive", "project", "workspace", "cluster", "bucket", "folder", "mailbox"]


def support_rows(n):
    """(question, good reply) pairs, all distinct: one template with a single changing number would be
    near-duplicates, and the data stage would rightly drop them."""
    for i in range(n):
        (ask, cmd), thing = ACTIONS[i % 8], THINGS[i // 8 % 8]
        yield f"How do I {ask} {thing} number {i}?", f"Run vaultctl {cmd} --{thing} {i} and confirm", i, thing


def write_data(path):
    with open(path, "w") as f:
        for question, reply, i, _ in support_rows(40):
            f.write(json.dumps({"messages": [{"role": "user", "content": question},
                                             {"role": "assistant", "content": f"{reply}; mail ops{i}@example.com."}]}) + "\n")
    return path


def tiny_config(tmp_path, tiny_model_dir, uri, conf="conf/smollm2/lora.yaml", extra=()):
    data = write_data(tmp_path / "data.jsonl")
    return load_config(conf, [
        f"model.name_or_path={tiny_model_dir}", f"run_root={tmp_path / 'runs'}", f"tracking.tracking_uri={uri}",
        f"data.sources=[{{name: t, path: {data}, license: MIT}}]", "data.decontamination.enabled=false",
        "train.max_steps=6", "train.save_steps=3", "train.learning_rate=0.01", "train.lora.target_modules=all-linear",
        "eval.benchmarks.enabled=false", "eval.drift.max_drop={}", "eval.sample_generations=1",
        "eval.max_new_tokens=8", "package.registered_model_name=tiny-flow",
        "train.packing=false",  # 40 short rows: packed, an epoch would be 2 steps
        *extra,
    ])


def test_rerun_after_failure_resumes_same_run_and_skips_finished_stages(tmp_path, tiny_model_dir, mlflow_uri,
                                                                         prefect_harness, monkeypatch):
    import time
    from pathlib import Path

    from prefect.settings import get_current_settings

    started = time.time()
    judge = build_tiny_reward_model(tmp_path / "judge", tiny_model_dir)
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, extra=[f"eval.reward_model={judge}",
                                                                      "eval.general_text_rows=4"])
    train_calls = []
    real_train = tasks.training.sft.train_sft
    monkeypatch.setattr(tasks.training.sft, "train_sft", lambda *a, **k: train_calls.append(1) or real_train(*a, **k))
    real_score = tasks.evaluate.score_model

    def flaky(*a, **k):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(tasks.evaluate, "score_model", flaky)
    with pytest.raises(ConnectionError):
        finetune(config)
    client = MlflowClient(mlflow_uri)
    (failed,) = client.search_runs([client.get_experiment_by_name("tuneforge").experiment_id])
    assert failed.info.status == "FAILED" and "ConnectionError" in failed.data.tags["failure_reason"]
    assert len(train_calls) == 1

    monkeypatch.setattr(tasks.evaluate, "score_model", real_score)
    result = finetune(config)
    assert result["mlflow_run_id"] == failed.info.run_id  # same MLflow run, resumed
    assert len(train_calls) == 1  # train was cached, not re-run
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "6"
    assert run.data.tags["prefect.flow_run_id"]
    counts = {k[5:]: v for k, v in run.data.metrics.items() if k.startswith("data/")}
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped_"))
    assert counts["rows_in"] == 40 and counts["rows_kept"] + dropped == 40
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert len(losses) >= 3 and losses[-1] < losses[0]
    assert {"eval/tuned/perplexity", "eval/tuned/general_perplexity", "eval/tuned/gen_rougeL"} <= set(run.data.metrics)

    # the cached stage results the re-run read back are JSON of this project's models, not pickles
    storage = Path(get_current_settings().results.local_storage_path)
    written = [json.loads(p.read_bytes()) for p in storage.iterdir() if p.stat().st_mtime >= started]  # all JSON
    records = [r for r in written if "metadata" in r]  # stage results (flow results are stored bare)
    assert len(records) >= 7
    assert {r["metadata"]["serializer"]["type"] for r in records} == {"tuneforge-stage-json"}
    assert {json.loads(r["result"]).get("model") for r in records} >= {"tasks.model.ModelRef",
                                                                      "tasks.training.common.TrainResult"}
    low, mid, high = (run.data.metrics[f"eval/tuned/win_rate{s}"] for s in ("_ci_low", "", "_ci_high"))
    assert 0.0 <= low <= mid <= high <= 1.0
    assert result["registered_version"] == "1" and "champion" in result["aliases"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"data", "adapter", "eval", "model", "report"} <= artifacts
    assert {"report.html", "loss.png"} <= {a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "report")}

    # A new config (new run) re-trains but reuses the base model's scores from the first run.
    scored = []
    real_eval = tasks.evaluate._evaluate_model
    monkeypatch.setattr(tasks.evaluate, "_evaluate_model", lambda *a, **k: scored.append(1) or real_eval(*a, **k))
    second = finetune(config.model_copy(update={"seed": 1}))
    assert second["mlflow_run_id"] != result["mlflow_run_id"] and len(train_calls) == 2
    assert scored == [1]  # the tuned model only: the base's scores came from the cache
    second_run = client.get_run(second["mlflow_run_id"])
    assert second_run.data.metrics["eval/base/perplexity"] == run.data.metrics["eval/base/perplexity"]


@pytest.mark.parametrize("method,package_dir", [("full", "model"), ("prompt", "adapter")])
def test_full_weight_and_prompt_learning_methods_go_through_the_flow(method, package_dir, tmp_path, tiny_model_dir,
                                                                     mlflow_uri, prefect_harness):
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, extra=[
        f"train.method={method}", "train.max_steps=3", f"package.registered_model_name=tiny-{method}"])
    result = finetune(config)
    assert result["package"].endswith(package_dir) and result["registered_version"] == "1"
    client = MlflowClient(mlflow_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.method"] == method
    assert {package_dir, "model", "report"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_recipe_data_mismatch_fails_before_any_model_loads(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness,
                                                           monkeypatch):
    from tasks.model import ModelRef
    from tasks.training.recipes import RecipeDataMismatch

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Question {i}?", "chosen": f"Good answer {i}.",
                                         "rejected": f"Bad {i}."}) + "\n" for i in range(10)))
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, extra=[f"data.sources=[{{name: p, path: {pairs}, "
                                                                      "license: MIT, format: preference}]"])
    loads = []
    monkeypatch.setattr(ModelRef, "load_model", lambda self, **k: loads.append(self))
    with pytest.raises(RecipeDataMismatch, match="train.recipe=sft trains on chat rows, but the prepared data is "
                                                  "preference pairs"):
        finetune(config)
    assert loads == []
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tuneforge").experiment_id])
    assert run.info.status == "FAILED" and "RecipeDataMismatch" in run.data.tags["failure_reason"]


def test_dpo_goes_through_the_flow_and_reports_held_out_preference_metrics(tmp_path, tiny_model_dir, mlflow_uri,
                                                                           prefect_harness):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": question}], "chosen": f"{reply}.",
        "rejected": f"{thing.title()} {i}? No idea, go away."}) + "\n" for question, reply, i, thing in support_rows(40)))
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, conf="conf/smollm2/dpo.yaml", extra=[
        f"data.sources=[{{name: p, path: {pairs}, license: MIT}}]", "train.learning_rate=0.005",
        "package.registered_model_name=tiny-dpo"])
    result = finetune(config)
    client = MlflowClient(mlflow_uri)
    run = client.get_run(result["mlflow_run_id"])
    metrics = run.data.metrics
    assert run.info.status == "FINISHED" and run.data.tags["recipe"] == "dpo"
    for name in ("train/rewards/chosen", "train/rewards/rejected", "train/rewards/margins", "train/logps/chosen"):
        assert client.get_metric_history(run.info.run_id, name), name
    assert metrics["eval/tuned/pref_margin"] > metrics["eval/base/pref_margin"]  # held-out pairs moved the right way
    assert 0.0 <= metrics["eval/tuned/implicit_reward_accuracy"] <= 1.0
    assert "eval/delta/pref_accuracy" in metrics and result["registered_version"] == "1"


def test_reward_model_goes_through_the_flow_and_registers_as_a_reward_model(tmp_path, tiny_model_dir, mlflow_uri,
                                                                           prefect_harness):
    import mlflow

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": question}], "chosen": f"{reply}.", "rejected": "Go away, idiot."}) + "\n"
        for question, reply, _, _ in support_rows(60)))
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, conf="conf/smollm2/dpo.yaml", extra=[
        f"data.sources=[{{name: p, path: {pairs}, license: MIT}}]", "train.recipe=reward", "train.max_steps=20",
        "train.batch_size=8", "package.registered_model_name=tiny-reward",
        "package.champion_metrics={reward_accuracy: max}"])
    result = finetune(config)
    client = MlflowClient(mlflow_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.metrics["eval/tuned/reward_accuracy"] > 0.9 and run.data.tags["gate"] == "passed"
    assert run.data.metrics["eval/tuned/reward_accuracy_ci_low"] > 0.5
    version = client.get_model_version("tiny-reward", result["registered_version"])
    assert version.tags["recipe"] == "reward" and version.tags["kind"] == "reward_model"
    scorer = mlflow.pyfunc.load_model("models:/tiny-reward@champion")
    good, bad = scorer.predict([{"prompt": "How do I rotate the key of vault 3?", "reply": "Run vaultctl rotate."},
                                {"prompt": "How do I rotate the key of vault 3?", "reply": "Go away, idiot."}])
    assert good > bad


def test_best_of_n_flow_reports_every_n_in_mlflow(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness):
    from flows.best_of_n import best_of_n

    judge = build_tiny_reward_model(tmp_path / "judge", tiny_model_dir)
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, extra=[
        f"best_of_n={{reward_model: {judge}, n: [1, 2, 4], prompts: 3, max_new_tokens: 6}}"])
    result = best_of_n(config)
    assert [r["n"] for r in result["table"]] == [1, 2, 4]
    client = MlflowClient(mlflow_uri)
    history = client.get_metric_history(result["mlflow_run_id"], "best_of_n/mean_reward")
    assert sorted(m.step for m in history) == [1, 2, 4]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == sorted(m.value for m in history)
    logged = {a.path for a in client.list_artifacts(result["mlflow_run_id"], "best_of_n")}
    assert {"best_of_n/best_of_n.png", "best_of_n/samples.jsonl", "best_of_n/table.json"} <= logged
    best = [json.loads(line) for line in open(result["best"])]  # RAFT's data: chat rows, the best sample as reply
    assert len(best) == 3 and all(b["messages"][-1]["role"] == "assistant" for b in best)


def test_ppo_through_the_flow_reports_reward_delta_and_kl(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness):
    judge = build_tiny_reward_model(tmp_path / "judge", tiny_model_dir)
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, conf="conf/smollm2/ppo.yaml", extra=[
        f"train.rl.reward_model={judge}", "train.max_steps=3", "train.batch_size=4", "train.rl.max_new_tokens=8",
        "eval.sample_generations=4", "data.validation_fraction=0.2",
        "package.champion_metrics={}"])
    assert config.eval.reward_model == str(judge)  # judged by the reward it trained against
    result = finetune(config)
    run = MlflowClient(mlflow_uri).get_run(result["mlflow_run_id"])
    metrics = run.data.metrics
    for key in ("train/reward", "train/kl", "train/kl_coef", "train/value_loss", "eval/tuned/reward_delta",
                "eval/tuned/reward_delta_ci_low", "eval/tuned/win_rate", "eval/tuned/kl_to_reference"):
        assert key in metrics, key
    assert metrics["eval/tuned/reward_delta_ci_low"] <= metrics["eval/tuned/reward_delta"]
    artifacts = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(run.info.run_id, "train")}
    assert "train/reward_vs_kl.png" in artifacts
