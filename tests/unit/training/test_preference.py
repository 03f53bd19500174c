"""Preference recipes on the tiny model: DPO's losses equal their closed forms, DPO widens the margin on its pairs,
KTO, ORPO and SimPO train, and knobs that TRL would ignore are rejected."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from tasks.model import ModelRef
from tasks.training.config import DPOConfig, TrainConfig
from tasks.training.dpo import build_trainer, train_dpo
from tasks.training.preference_data import load_feedback, load_pairs
from tasks.training.recipes import trainer_for

_PAIRS = [
    ("How do I start a backup?", "Run `stratovault backup start --profile nightly`.", "Figure it out yourself."),
    ("Where are the logs?", "In /var/log/stratovault; `stratovault logs --tail 50` shows the end.", "No idea."),
    ("How do I restore one file?", "`stratovault restore --snapshot latest --path /etc/hosts`.", "Reinstall."),
    ("What does SVX-104 mean?", "The repository is locked: run `stratovault unlock`, then retry.", "Buy more disks."),
]


@pytest.fixture(scope="module")
def pairs_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "train.jsonl"
    with open(path, "w") as f:
        for q, good, bad in _PAIRS * 2:
            f.write(json.dumps({"messages": [{"role": "user", "content": q}], "chosen": good, "rejected": bad}) + "\n")
    return path


def fast(recipe: str, **overrides) -> TrainConfig:
    base = dict(recipe=recipe, method="lora", max_steps=6, epochs=20, learning_rate=5e-3, warmup_fraction=0.0,
                lr_scheduler="constant_with_warmup", batch_size=4, max_length=96, logging_steps=1, save_steps=100,
                precision="fp32", lora={"rank": 8, "target_modules": "all-linear"})
    return TrainConfig.model_validate({**base, **overrides})


def _completion_logps(model, batch) -> torch.Tensor:
    """Summed log-probs of the completion tokens, computed here from the logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (logps * batch["completion_mask"][:, 1:]).sum(1)


@pytest.mark.parametrize("loss_type,smoothing", [("sigmoid", 0.0), ("ipo", 0.0), ("hinge", 0.0), ("robust", 0.2)])
def test_dpo_loss_equals_its_closed_form(loss_type, smoothing, tiny_model_dir, pairs_path, tmp_path):
    beta = 0.5
    cfg = fast("dpo", dpo={"beta": beta, "loss_type": loss_type, "label_smoothing": smoothing})
    trainer = build_trainer(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, pairs_path, tmp_path)
    model = trainer.model
    torch.manual_seed(0)
    with torch.no_grad():  # move the adapter off zero, so the policy differs from the adapter-disabled reference
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    batch = next(iter(trainer.get_train_dataloader()))
    model.eval()
    with torch.no_grad():
        ours = trainer.compute_loss(model, batch)
        policy = _completion_logps(model, batch)
        with model.disable_adapter():
            ref = _completion_logps(model, batch)
    chosen, rejected = (policy - ref).chunk(2)
    delta = chosen - rejected
    if loss_type == "sigmoid":
        expected = -F.logsigmoid(beta * delta)
    elif loss_type == "hinge":
        expected = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":
        n_chosen, n_rejected = batch["completion_mask"].sum(1).float().chunk(2)
        expected = (chosen / n_chosen - rejected / n_rejected - 1 / (2 * beta)) ** 2
    else:
        eps = smoothing
        expected = (-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)
    assert delta.abs().max() > 1e-3  # a real margin, not the trivial policy == reference case
    torch.testing.assert_close(ours, expected.mean(), atol=1e-4, rtol=1e-4)


def test_dpo_widens_the_chosen_rejected_margin_on_its_pairs(tiny_model_dir, pairs_path, tmp_path):
    result = train_dpo(fast("dpo", max_steps=8), ModelRef.of(str(tiny_model_dir)), tiny_model_dir, pairs_path,
                       tmp_path)
    logs = [h for h in json.loads(result.history_path.read_text()) if "rewards/margins" in h]
    assert logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # step 1: policy == reference
    assert logs[-1]["rewards/margins"] > 0.5 and logs[-1]["rewards/accuracies"] == 1.0
    assert result.final_loss < result.first_loss and result.recipe == "dpo"
    assert result.adapter_dir is not None and (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_full_weight_dpo_uses_a_frozen_copy_as_reference(tiny_model_dir, pairs_path, tmp_path):
    trainer = build_trainer(fast("dpo", method="full", learning_rate=1e-4), ModelRef.of(str(tiny_model_dir)),
                            tiny_model_dir, pairs_path, tmp_path)
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    assert not any(p.requires_grad for p in trainer.ref_model.parameters())


@pytest.mark.parametrize("recipe", ["kto", "orpo", "simpo"])
def test_reference_free_and_unpaired_recipes_train(recipe, tiny_model_dir, pairs_path, tmp_path):
    result = trainer_for(recipe)(fast(recipe, max_steps=6), ModelRef.of(str(tiny_model_dir)), tiny_model_dir,
                                 pairs_path, tmp_path)
    losses = [h["loss"] for h in json.loads(result.history_path.read_text()) if "loss" in h]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses


def test_paired_data_is_unpaired_for_kto(pairs_path):
    feedback, pairs = load_feedback(pairs_path), load_pairs(pairs_path)
    assert len(feedback) == 2 * len(pairs) and sum(feedback["label"]) == len(pairs)
    assert feedback[0]["completion"] == pairs[0]["chosen"] and feedback[1]["completion"] == pairs[0]["rejected"]


def test_kto_needs_a_batch_of_two():
    with pytest.raises(ValidationError, match="recipe kto needs batch_size >= 2"):
        fast("kto", batch_size=1)


def test_label_smoothing_is_never_silently_ignored():
    with pytest.raises(ValidationError, match="read only by loss_type=robust"):
        DPOConfig(loss_type="sigmoid", label_smoothing=0.1)
    assert DPOConfig(loss_type="robust", label_smoothing=0.1).label_smoothing == 0.1


def test_python_api_is_the_recipe_the_flow_runs(tiny_model_dir, tmp_path):
    from tasks.training.api import DPOTrainer, KTOTrainer

    pairs = [{"prompt": q, "chosen": good, "rejected": bad} for q, good, bad in _PAIRS * 2]
    trainer = DPOTrainer(model=str(tiny_model_dir), config=DPOConfig(beta=0.2, loss_type="hinge"),
                         train=fast("dpo", max_steps=4), out_dir=tmp_path / "dpo")
    assert trainer.cfg.recipe == "dpo" and trainer.cfg.dpo.loss_type == "hinge" and trainer.cfg.max_steps == 4
    result = trainer.train(pairs)
    logs = [h for h in json.loads(result.history_path.read_text()) if "rewards/margins" in h]
    assert result.recipe == "dpo" and logs[-1]["rewards/margins"] > 0
    with pytest.raises(ValueError, match="recipe=kto trains on"):  # chat rows are neither pairs nor feedback
        KTOTrainer(model=str(tiny_model_dir), train=fast("kto")).train(
            [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}])
