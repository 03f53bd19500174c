"""The LM head at labelled positions only (fused_head.py) computes what the full logits compute: per-token values,
losses and gradients, for a frozen head (adapters) and a trainable one (full fine-tuning)."""
import pytest
import torch
import torch.nn.functional as F

from tasks.model import ModelRef
from tasks.training import fused_head
from tasks.training.dpo import build_trainer as build_dpo
from tasks.training.sft import build_trainer
from tests.unit.training.support import fast


def _reference(hidden, weight, targets):
    z = hidden @ weight.t()
    log_p = z.log_softmax(-1)
    p = log_p.exp()
    return {"log_probs": log_p.gather(-1, targets[:, None]).squeeze(-1), "entropy": -(p * log_p).sum(-1),
            "mean_logits": z.mean(-1), "is_top1": z.argmax(-1) == targets,
            "log_sum_sq_probs": (p * p).sum(-1).log()}


@pytest.mark.parametrize("trainable_head", [False, True])
def test_labelled_log_probs_match_the_full_logits(monkeypatch, trainable_head):
    monkeypatch.setattr(fused_head, "ROWS_PER_CHUNK", 7)  # several chunks and a ragged last one
    torch.manual_seed(0)
    hidden = torch.randn(23, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=trainable_head)
    targets = torch.randint(0, 50, (23,))
    fields = dict(zip(fused_head.SUPPORTED_OUTPUTS,
                      fused_head.labelled_log_probs(hidden, weight, None, targets, fused_head.SUPPORTED_OUTPUTS)))
    expected = _reference(hidden, weight, targets)
    for name, value in fields.items():
        if name == "is_top1":
            assert torch.equal(value, expected[name])
        else:
            tolerance = 1e-5 if trainable_head else 1e-9
            assert value.detach().double() == pytest.approx(expected[name].detach(), abs=tolerance), name

    # a loss that is not a plain sum (DPO-like), so each token's incoming gradient differs
    def loss(log_probs):
        return -F.logsigmoid(log_probs[:12].sum() - log_probs[12:].sum()) + (log_probs ** 2).mean()

    got = torch.autograd.grad(loss(fields["log_probs"]), [hidden, weight] if trainable_head else [hidden])
    want = torch.autograd.grad(loss(expected["log_probs"]), [hidden, weight] if trainable_head else [hidden])
    for g, w in zip(got, want):
        assert g.double() == pytest.approx(w, abs=1e-5 if trainable_head else 1e-9)


def _full_logits_loss_and_grads(trainer, batch):
    """The model's own forward: full logits, transformers' cross-entropy."""
    trainer.model.zero_grad()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = trainer.model(**inputs).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method,packing", [("lora", False), ("lora", True), ("full", True)])
def test_sft_loss_and_gradients_equal_the_full_logits(tmp_path, tiny_model_dir, chat_path, method, packing):
    trainer = build_trainer(fast(method, packing=packing, max_length=128), ModelRef.of(str(tiny_model_dir)),
                            tiny_model_dir, chat_path, tmp_path)
    assert fused_head._trl_patch(trainer.model.get_base_model() if method == "lora" else trainer.model) is None
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < labelled < batch["labels"].numel() - batch["labels"].shape[0]  # prompt tokens are left out
    trainer.model.train()
    trainer.model.zero_grad()
    fused = trainer.compute_loss(trainer.model, dict(batch))
    fused.backward()
    fused_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    full, full_grads = _full_logits_loss_and_grads(trainer, batch)
    assert fused.item() == pytest.approx(full, rel=1e-5)
    assert fused_grads.keys() == full_grads.keys() and fused_grads
    for name, grad in fused_grads.items():
        assert grad == pytest.approx(full_grads[name], abs=1e-6, rel=1e-4), name


def test_dpo_uses_the_labelled_head_on_policy_and_reference(tmp_path, tiny_model_dir, chat_path):
    import json

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}], "chosen": f"yes {i}",
                                         "rejected": f"no {i} no"}) + "\n" for i in range(8)))
    trainer = build_dpo(fast("full", recipe="dpo", max_length=64), ModelRef.of(str(tiny_model_dir)),
                        tiny_model_dir, pairs, tmp_path / "out")
    assert fused_head._trl_patch(trainer.model) is None and fused_head._trl_patch(trainer.ref_model) is None
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    out = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        labels=torch.where(batch["completion_mask"].bool(), batch["input_ids"], -100),
                        fused_lm_head=True)
    logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    want = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1) * batch["completion_mask"][:, 1:]
    assert out.log_probs.detach() == pytest.approx(want.detach(), abs=1e-5)


def test_other_heads_keep_trls_kernel(tiny_model_dir):
    from trl.trainer.utils import add_fused_lm_head

    model = ModelRef.of(str(tiny_model_dir)).load_model()
    assert not fused_head.install(model)  # not patched by TRL: nothing to replace
    add_fused_lm_head(model, temperature=0.7)  # GRPO's sampling temperature: a different distribution
    assert not fused_head.install(model) and fused_head._trl_patch(model)["temperature"] == 0.7
    add_fused_lm_head(model)
    assert fused_head.install(model) and fused_head._trl_patch(model) is None
