"""The LM head and its log-probabilities at labelled positions only, on every device.

TRL 1.x patches the model with a fused, chunked head (`trl.trainer.utils.add_fused_lm_head`) that never builds the
`(batch, seq, vocab)` logits, but on a device without Triton (a CPU) it scores *every* position, prompt and padding
included, and its backward recomputes each logits tile. Measured on SmolLM2-135M (49,152-token vocabulary, LoRA,
batch 4 x 256, 2 CPU cores) that head took 38% of a training step.

`install(model)` replaces that patch with one that projects only the positions whose next-token label is not -100
(assistant replies, not prompts or padding), and, when the head is frozen (every adapter method), computes the
gradient of each token's log-probability with respect to its hidden state in the same pass as the forward:
d log p(y|h) / dh = (onehot(y) - softmax(hW^T)) W depends on that token's row alone, so it is stored ([N, hidden],
small) and the backward is one multiply by the incoming per-token gradient. That is two matmuls per labelled token
instead of three per position, and it is exact for any loss built from the per-token log-probs (SFT's mean, DPO's
sigmoid of sums). A trainable head (full fine-tuning) keeps TRL's recomputing kernel, on the labelled rows only.

Written here rather than taken from a library: Liger's fused linear cross-entropy computes one summed loss (not
per-token log-probs, which DPO and KTO need) and targets Triton; TRL's own kernel compacts rows only under Triton.
"""
from __future__ import annotations

import functools
import types

import torch
from trl.kernels.chunked_logprob import ChunkedLogProbFunction
from trl.trainer.utils import FusedCausalLMOutput

ROWS_PER_CHUNK = 256  # [256, 49152] fp32 logits = 48 MiB per chunk: the full logits are never built
SUPPORTED_OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


class FrozenHeadLogProbs(torch.autograd.Function):
    """log softmax(h W^T)[y] per row of `hidden`, with W frozen; the gradient wrt `hidden` is formed in the forward.

    Returns (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1), each [N]; only log_probs carries a
    gradient. `outputs` names which of the others to compute (the rest are None).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, outputs: tuple[str, ...]):
        n = hidden.shape[0]
        device = hidden.device
        # under autocast the matmuls run in its dtype: the head is cast once here, not once per chunk and direction
        compute = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else hidden.dtype
        acc = torch.promote_types(hidden.dtype, torch.float32)  # softmax statistics never in bf16
        w = weight.to(compute)
        log_probs = torch.empty(n, device=device, dtype=acc)
        extra = {name: torch.empty(n, device=device, dtype=acc)
                 for name in outputs if name not in ("log_probs", "is_top1")}
        is_top1 = torch.empty(n, device=device, dtype=torch.bool) if "is_top1" in outputs else None
        needs_grad = ctx.needs_input_grad[0]
        grad_hidden = torch.empty(hidden.shape, device=device, dtype=acc) if needs_grad else None
        with torch.autocast(device.type, enabled=False):
            for start in range(0, n, ROWS_PER_CHUNK):
                rows = slice(start, min(start + ROWS_PER_CHUNK, n))
                y = targets[rows]
                z = (hidden[rows].to(compute) @ w.t()).to(acc)  # [rows, vocab]
                if is_top1 is not None:
                    is_top1[rows] = z.argmax(-1) == y
                if "mean_logits" in extra:
                    extra["mean_logits"][rows] = z.mean(-1)
                if "log_sum_sq_probs" in extra:
                    extra["log_sum_sq_probs"][rows] = torch.logsumexp(2 * z, -1) - 2 * torch.logsumexp(z, -1)
                log_z = torch.logsumexp(z, -1, keepdim=True)
                log_p = z.sub_(log_z)  # in place: z is not needed again
                log_probs[rows] = log_p.gather(-1, y[:, None]).squeeze(-1)
                if not (needs_grad or "entropy" in extra):
                    continue
                p = log_p.exp()
                if "entropy" in extra:
                    extra["entropy"][rows] = -(p * log_p).sum(-1)
                if needs_grad:  # d log p_y / dz = onehot(y) - p, so d/dh = (onehot(y) - p) W; kept as -(p - onehot) W
                    p[torch.arange(p.shape[0], device=device), y] -= 1
                    grad_hidden[rows] = -(p.to(compute) @ w).to(acc)
        if needs_grad:
            ctx.save_for_backward(grad_hidden)
        ctx.input_dtype = hidden.dtype
        return (log_probs, extra.get("entropy"), extra.get("log_sum_sq_probs"), extra.get("mean_logits"), is_top1)

    @staticmethod
    def backward(ctx, grad_log_probs, *_):
        (grad_hidden,) = ctx.saved_tensors
        if grad_log_probs is None:
            return None, None, None, None
        return (grad_hidden * grad_log_probs[:, None]).to(ctx.input_dtype), None, None, None


def labelled_log_probs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                       outputs: tuple[str, ...]) -> tuple:
    """The head's per-token outputs for the rows of `hidden` [N, H] (each row one labelled position)."""
    if bias is None and not weight.requires_grad:
        return FrozenHeadLogProbs.apply(hidden, weight, targets, outputs)
    extra = tuple(name for name in outputs if name != "log_probs")
    return ChunkedLogProbFunction.apply(hidden, weight, bias, targets, 1.0, 32768, None, 1.0, extra)


def fused_forward(model, outputs: tuple[str, ...]):
    """TRL's fused-head calling convention (`model(..., labels=..., fused_lm_head=True)` -> FusedCausalLMOutput),
    scoring labelled positions only; without `fused_lm_head` the model's own forward (generation is unchanged)."""
    original = type(model).forward

    @functools.wraps(original)  # generate() validates its kwargs against the signature
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            for key, value in (("labels", labels), ("shift_labels", shift_labels),
                               ("num_items_in_batch", num_items_in_batch)):
                if value is not None:
                    kwargs[key] = value
            return original(self, *args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        head = self.get_output_embeddings()
        hidden, labels = hidden.to(head.weight.device), labels.to(head.weight.device)
        mask = labels != -100
        fields = labelled_log_probs(hidden[mask], head.weight, getattr(head, "bias", None), labels[mask], outputs)
        # masked_scatter keeps a batch without any label connected to the graph (a differentiable zero)
        log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (
            None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in fields)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq_probs,
                                   mean_logits=mean_logits, is_top1=is_top1, label_mask=mask)

    return types.MethodType(forward, model)


def _trl_patch(inner) -> dict | None:
    """The settings TRL's `add_fused_lm_head` closed over on `inner` (outputs, temperature, ...), or None when
    `inner.forward` is not that patch."""
    patched = vars(inner).get("forward")
    code = getattr(getattr(patched, "__func__", None), "__code__", None)
    if code is None or code.co_name != "_fused_forward" or not patched.__func__.__closure__:
        return None
    return {name: cell.cell_contents for name, cell in zip(code.co_freevars, patched.__func__.__closure__)}


def install(model) -> bool:
    """Replace TRL's fused head on `model` (the causal LM, under any PEFT wrapper) with the labelled-only one.

    Only where it computes the same thing: a plain LM head at temperature 1, no logit scaling or soft-capping
    (Gemma 2, Cohere and Granite keep TRL's kernel, which knows those), no fp32 head cast, and outputs this module
    computes. Anything else, including a TRL release whose patch looks different, keeps TRL's. Returns whether it
    was replaced.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    trl = _trl_patch(inner)
    if trl is None:
        return False
    outputs = ("log_probs", *trl.get("outputs", ()))
    same = (trl.get("temperature", 1.0) == 1.0 and not trl.get("cast_lm_head_to_fp32", False)
            and trl.get("final_logit_softcapping") is None and trl.get("logit_scale", 1.0) == 1.0
            and set(outputs) <= set(SUPPORTED_OUTPUTS))
    if not same:
        return False
    inner.forward = fused_forward(inner, tuple(dict.fromkeys(outputs)))
    return True
