"""Reward recipe on the tiny model: a separable preference set is learned (held-out accuracy > 0.9), and the saved
score head gives the same scores after a reload, from the adapter and from the folded model folder."""
import json
import random

import numpy as np
import torch
from peft import PeftModel

from evals.reward import accuracy_summary, pairwise_scores
from evals.winrate import RewardJudge
from tasks.model import ModelRef
from tasks.training.config import TrainConfig
from tasks.training.reward import load_scorer, train_reward

_GOOD = ["Run the restore command and verify the checksum.", "Check the logs, then retry the backup.",
         "Rotate the key with the vault tool and confirm."]
_BAD = ["I hate you, go away.", "Stupid question, idiot.", "Shut up and leave me alone."]


def _pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"messages": [{"role": "user", "content": f"Question {rng.randint(0, 999)}: how do I fix job {i}?"}],
             "chosen": rng.choice(_GOOD), "rejected": rng.choice(_BAD)} for i in range(n)]


def test_reward_model_learns_a_separable_set_and_reloads_exactly(tiny_model_dir, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _pairs(48, 0)))
    cfg = TrainConfig.model_validate(dict(recipe="reward", method="lora", max_steps=30, epochs=20, learning_rate=1e-2,
                                          warmup_fraction=0.0, lr_scheduler="constant_with_warmup", batch_size=8,
                                          max_length=64, logging_steps=5, save_steps=100, precision="fp32",
                                          lora={"rank": 8, "target_modules": "all-linear"}))
    base = ModelRef.of(str(tiny_model_dir))
    result = train_reward(cfg, base, tiny_model_dir, train, tmp_path / "out")
    assert result.recipe == "reward" and result.adapter_dir is None and result.final_loss < result.first_loss

    held_out = _pairs(40, 1)
    judge = RewardJudge(result.model_dir)
    summary = accuracy_summary(pairwise_scores(judge, held_out), n_resamples=500)
    assert summary["reward_accuracy"] > 0.9 and summary["reward_ties"] == 0.0
    assert summary["reward_accuracy_ci_low"] <= summary["reward_accuracy"] <= summary["reward_accuracy_ci_high"]

    # the adapter (with its score head in modules_to_save) reloads to the same scores as the folded folder
    tokenizer = base.load_tokenizer()
    reloaded = PeftModel.from_pretrained(load_scorer(base, tokenizer), str(tmp_path / "out" / "adapter")).eval()
    texts = [judge.format(p["messages"], p["chosen"]) for p in held_out[:6]]
    enc = judge.tokenizer(texts, padding=True, padding_side="right", add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        from_adapter = reloaded(**enc).logits[:, 0].numpy()
    from_folder = judge.score([p["messages"] for p in held_out[:6]], [p["chosen"] for p in held_out[:6]])
    np.testing.assert_allclose(from_adapter, from_folder, atol=1e-4)


def test_ties_are_counted_apart_not_as_wins():
    scores = {"reward_accuracy": np.array([1.0, 0.0, 0.0, 1.0]), "reward_tie": np.array([0.0, 1.0, 0.0, 0.0]),
              "reward_margin": np.array([0.5, 0.0, -0.2, 0.1])}
    summary = accuracy_summary(scores, n_resamples=200)
    assert summary["reward_accuracy"] == 0.5 and summary["reward_ties"] == 0.25 and summary["reward_pairs"] == 4


def test_python_api_trains_a_reward_model(tiny_model_dir, tmp_path):
    from tasks.training.api import RewardModelTrainer

    pairs = [{"prompt": p["messages"][0]["content"], "chosen": p["chosen"], "rejected": p["rejected"]}
             for p in _pairs(24, 2)]
    cfg = TrainConfig.model_validate(dict(method="lora", max_steps=20, epochs=20, learning_rate=1e-2, batch_size=8,
                                          max_length=64, logging_steps=5, save_steps=100, precision="fp32",
                                          warmup_fraction=0.0, lora={"rank": 8, "target_modules": "all-linear"}))
    result = RewardModelTrainer(model=str(tiny_model_dir), train=cfg, out_dir=tmp_path).train(pairs)
    assert result.recipe == "reward" and result.final_loss < result.first_loss
    good, bad = RewardJudge(result.model_dir).score(["How do I fix job 3?"] * 2, [_GOOD[0], _BAD[0]])
    assert good > bad
