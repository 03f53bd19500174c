"""One short real run per preference recipe on SmolLM2-135M-Instruct: four steps on the same two demo preference
pairs, LoRA r=8 on q/k/v/o; the loss must fall and the saved result must load the way evaluation loads it."""
import json
import math

import pytest
import torch

from evals.winrate import RewardJudge
from tasks.model import EMBEDDED, ModelRef
from tasks.training.config import TrainConfig
from tasks.training.loading import load_trained
from tasks.training.recipes import trainer_for

pytestmark = pytest.mark.slow

LEARNING_RATES = {"dpo": 2e-3, "kto": 2e-3, "orpo": 2e-3, "simpo": 2e-3, "reward": 2e-3}


@pytest.fixture(scope="module")
def demo_pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "train.jsonl"
    rows = [json.loads(line) for line in open("conf/data/demo_preferences.jsonl")][:2]
    path.write_text("".join(json.dumps({"messages": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
                            + "\n" for r in rows))
    return path


@pytest.mark.parametrize("recipe", list(LEARNING_RATES))
def test_recipe_on_smollm2(recipe, demo_pairs, tmp_path):
    cfg = TrainConfig.model_validate({"recipe": recipe, "method": "lora", "max_steps": 4, "epochs": 4, "batch_size": 2,
                                      "max_length": 320, "logging_steps": 1, "save_steps": 100, "warmup_fraction": 0.0,
                                      "lr_scheduler": "constant_with_warmup", "learning_rate": LEARNING_RATES[recipe]})
    base = ModelRef.of(EMBEDDED)
    result = trainer_for(recipe)(cfg, base, base.path, demo_pairs, tmp_path)
    losses = [h["loss"] for h in json.loads(result.history_path.read_text()) if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses
    if recipe == "reward":
        row = json.loads(demo_pairs.read_text().splitlines()[0])
        chosen, rejected = RewardJudge(result.model_dir).score([row["messages"]] * 2, [row["chosen"], row["rejected"]])
        assert chosen > rejected
        return
    model, tokenizer = load_trained(base, base.path, adapter_dir=result.adapter_dir, model_dir=result.model_dir)
    enc = tokenizer.apply_chat_template([{"role": "user", "content": "How do I restore a file?"}],
                                        add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**enc).logits).all()
