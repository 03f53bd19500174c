"""Attention over packed rows at the cost of the examples in them, on devices without a varlen kernel.

Padding-free packing (train.packing) concatenates a batch's examples into one row and marks the boundaries with
`cu_seq_lens_q` (TRL's collator). FlashAttention-2 on CUDA reads those and attends within each example. PyTorch's
SDPA has no such varlen kernel on CPU, so transformers builds a block-diagonal mask over the whole row and SDPA
computes every query-key pair of it: on SmolLM2 with 4 x ~200-token examples, an 830 x 830 attention instead of
four ~200 x 200 ones, and 19% of a training step.

`packed_sdpa` runs causal SDPA on each example's slice instead (same result, each block's upper triangle skipped)
and is registered with transformers' own `AttentionInterface`, so it is selected like any attention
implementation (`model.set_attn_implementation(PACKED_SDPA)`). Without boundaries (generation, padded batches) it
is transformers' SDPA unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

PACKED_SDPA = "sdpa_packed"


def packed_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                cu_seq_lens_q: torch.Tensor | None = None, **kwargs):
    """transformers' attention signature: query/key/value [batch, heads, seq, head_dim] -> ([batch, seq, heads,
    head_dim], None)."""
    if cu_seq_lens_q is None or query.shape[0] != 1 or query.shape[2] != key.shape[2] or kwargs.get("softcap"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bounds = cu_seq_lens_q.tolist()
    dtype, device = query.dtype, query.device.type
    cpu_fp32 = device == "cpu" and (dtype == torch.bfloat16 or torch.is_autocast_enabled(device))
    if cpu_fp32:  # CPU SDPA's bf16 backward is ~1.5x slower than its fp32 one at these sizes (measured)
        query, key, value = query.float(), key.float(), value.float()
    with torch.autocast(device, enabled=not cpu_fp32 and torch.is_autocast_enabled(device)):
        out = torch.cat([
            F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout,
                                           scale=scaling, is_causal=True)
            for s, e in zip(bounds, bounds[1:]) if e > s], dim=2)
    return out.to(dtype).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make `PACKED_SDPA` an attention implementation transformers knows (idempotent); returns its name."""
    AttentionInterface.register(PACKED_SDPA, packed_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)
    return PACKED_SDPA


def use_packed_attention(model) -> bool:
    """Switch `model` from SDPA to `packed_sdpa`; other implementations (FlashAttention, eager) are left alone.
    Returns whether it switched."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(register())
    return True
