"""Online RL on SmolLM2-135M-Instruct: a few real steps of each recipe, then the whole SFT -> reward model -> PPO
chain from its config, as `make pipeline CONF=conf/smollm2/rlhf.yaml` runs it."""
import json
import math

import pytest
from mlflow import MlflowClient

from tasks.model import EMBEDDED, ModelRef
from tasks.training.config import TrainConfig
from tasks.training.recipes import trainer_for

pytestmark = pytest.mark.slow


def short_replies(prompts, completions) -> list[float]:
    """1 for a reply of at most 12 words, falling linearly to 0 at 36."""
    return [max(0.0, min(1.0, (36 - len(c.split())) / 24)) for c in completions]


@pytest.mark.parametrize("recipe", ["ppo", "grpo", "rloo"])
def test_online_recipe_on_smollm2(recipe, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n" for q in [
        "How do I restore a file from last night's backup?", "What is a good name for a cat?",
        "Explain what a checksum is.", "How do I rotate an API key?"]))
    own = {"n_epochs": 2} if recipe == "ppo" else {"num_generations": 2}
    cfg = TrainConfig.model_validate({
        "recipe": recipe, "method": "lora", "max_steps": 3, "epochs": 4, "batch_size": 4, "learning_rate": 1e-4, "max_length": 256,
        "logging_steps": 1, "save_steps": 100, recipe: own,
        "rl": {"reward_function": f"{__name__}:short_replies", "max_new_tokens": 24}})
    base = ModelRef.of(EMBEDDED)
    result = trainer_for(recipe)(cfg, base, base.path, prompts, tmp_path / "out")
    history = [h for h in json.loads(result.history_path.read_text()) if "reward" in h]
    assert len(history) == 3
    assert all(math.isfinite(h["kl"]) and math.isfinite(h["loss"]) and 0 <= h["reward"] <= 1 for h in history)
    assert (result.adapter_dir / "adapter_config.json").is_file()


def test_rlhf_chain_on_smollm2(tmp_path, mlflow_uri, shared_data):
    from flows.chain import chain
    from tasks.config import load_config

    config = load_config("conf/smollm2/rlhf.yaml", [f"run_root={tmp_path / 'runs'}",
                                                    f"tracking.tracking_uri={mlflow_uri}"])
    result = chain(config)
    assert result["verdict"] == "passed" and list(result["stages"]) == ["sft", "reward", "ppo"]
    client = MlflowClient(mlflow_uri)
    ppo = client.get_run(result["stages"]["ppo"]["mlflow_run_id"])
    assert ppo.data.tags["mlflow.parentRunId"] == result["mlflow_run_id"]
    rewards = client.get_metric_history(ppo.info.run_id, "train/reward")
    assert len(rewards) == config.stages["ppo"].train.max_steps
    metrics = ppo.data.metrics
    low, high = metrics["eval/tuned/reward_delta_ci_low"], metrics["eval/tuned/reward_delta_ci_high"]
    assert low <= metrics["eval/tuned/reward_delta"] <= high
    assert 0 <= metrics["eval/tuned/kl_to_reference_ci_high"] and math.isfinite(metrics["eval/tuned/kl_to_reference"])
    assert "train/reward_vs_kl.png" in {a.path for a in client.list_artifacts(ppo.info.run_id, "train")}
