"""Distillation: each loss_type against a hand computation, the student built from the teacher, a tiny run."""
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from tasks.model import ModelRef
from tasks.training.config import DistillationConfig
from tasks.training.distill import distillation_loss, divergence, student_from_teacher, train_distill
from tests.unit.training.support import fast

S = torch.tensor([[1.0, 0.0, -1.0]])
T = torch.tensor([[0.0, 2.0, 0.0]])


def probs(logits, temperature):
    e = [math.exp(x / temperature) for x in logits]
    return [x / sum(e) for x in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


@pytest.mark.parametrize("loss_type", ["kl_div", "forward_kl", "reverse_kl", "jsd"])
def test_divergence_matches_hand_computation(loss_type):
    p_s, p_t = probs(S[0].tolist(), 2.0), probs(T[0].tolist(), 2.0)
    beta = 0.3
    m = [beta * t + (1 - beta) * s for s, t in zip(p_s, p_t)]
    expected = {"kl_div": kl(p_t, p_s), "forward_kl": kl(p_t, p_s), "reverse_kl": kl(p_s, p_t),
                "jsd": beta * kl(p_t, m) + (1 - beta) * kl(p_s, m)}[loss_type]
    cfg = DistillationConfig(loss_type=loss_type, temperature=2.0, beta=beta)
    assert divergence(S, T, cfg).item() == pytest.approx(expected, rel=1e-5)


def test_loss_mixes_hard_and_soft_terms_on_labelled_positions():
    student = torch.stack([S[0], T[0], S[0]]).unsqueeze(0)  # 3 positions; position 0 predicts label 1, ...
    teacher = torch.stack([T[0], T[0], S[0]]).unsqueeze(0)
    labels = torch.tensor([[-100, 1, -100]])  # only position 0's prediction (label 1) counts
    cfg = DistillationConfig(alpha=0.25, temperature=2.0)
    loss, parts = distillation_loss(student, teacher, labels, cfg)
    hard = -math.log(probs(S[0].tolist(), 1.0)[1])
    soft = 4.0 * kl(probs(T[0].tolist(), 2.0), probs(S[0].tolist(), 2.0))
    assert parts["hard"].item() == pytest.approx(hard, rel=1e-5)
    assert parts["soft"].item() == pytest.approx(soft, rel=1e-5)
    assert loss.item() == pytest.approx(0.25 * hard + 0.75 * soft, rel=1e-5)


def test_student_keeps_every_other_block_with_its_weights(tiny_model_dir):
    teacher = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    student = student_from_teacher(teacher)
    assert student.config.num_hidden_layers == 1 and len(student.model.layers) == 1
    kept = student.model.layers[0].state_dict()
    assert all(torch.equal(v, reference.model.layers[0].state_dict()[k]) for k, v in kept.items())
    assert torch.equal(student.model.embed_tokens.weight, reference.model.embed_tokens.weight)
    out = student.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)  # KV cache indices fit
    assert out.shape == (1, 6)


def test_vocabulary_mismatch_is_refused(tiny_model_dir, tmp_path, chat_path):
    from tests.helpers import build_tiny_model

    other = build_tiny_model(tmp_path / "other")
    m = AutoModelForCausalLM.from_pretrained(other)
    m.resize_token_embeddings(m.config.vocab_size + 8)
    m.save_pretrained(other)
    cfg = fast("full", recipe="distill", distill={"student": str(other)})
    with pytest.raises(ValueError, match="vocabulary differs"):
        train_distill(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path / "out")


def test_offline_distillation_trains_the_student_and_its_sft_twin(sft_tiny_dir, tmp_path, chat_path):
    cfg = fast("full", recipe="distill", max_steps=16, learning_rate=1e-3, distill={"alpha": 0.5})
    result = train_distill(cfg, ModelRef.of(str(sft_tiny_dir)), sft_tiny_dir, chat_path, tmp_path / "out")
    losses = [h["loss"] for h in json.loads(result.history_path.read_text()) if "loss" in h]
    assert sum(losses[-4:]) < sum(losses[:4])
    student = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert student.config.num_hidden_layers == 1
    assert result.baseline_model_dir.is_dir() and result.teacher_dir == sft_tiny_dir
    logged = [h for h in json.loads(result.history_path.read_text()) if "distill_soft" in h]
    assert logged and all(h["distill_soft"] >= 0 for h in logged)


def test_on_policy_distillation_runs_through_trl(sft_tiny_dir, tmp_path, chat_path):
    cfg = fast("full", recipe="distill", max_steps=3, learning_rate=1e-3,
               distill={"mode": "on_policy", "loss_type": "reverse_kl", "max_new_tokens": 8, "compare_sft": False})
    result = train_distill(cfg, ModelRef.of(str(sft_tiny_dir)), sft_tiny_dir, chat_path, tmp_path / "out")
    assert result.baseline_model_dir is None and AutoModelForCausalLM.from_pretrained(result.model_dir)
    losses = [h["loss"] for h in json.loads(result.history_path.read_text()) if "loss" in h]
    assert len(losses) == 3 and all(x >= 0 for x in losses)
