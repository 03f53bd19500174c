"""Turn a base model into the trainable model of the configured method: a PEFT adapter or a choice of weights to train.

Adapter methods go through `adapters.py` (thin over PEFT); full, partial and GaLore train the model's own weights
(GaLore differs only in its optimizer, see optim.py).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from tasks.model import ModelRef
from tasks.training.adapters import (AdaLoRAAdapter, Adapter, BottleneckAdapter, DoRAAdapter, IA3Adapter, LoRAAdapter,
                                     PrefixTuning, PromptTuning, PTuning, QLoRAAdapter)
from tasks.training.config import FULL_WEIGHT, PartialConfig, TrainConfig

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def adapter_for(cfg: TrainConfig, tokenizer_dir: Path | None = None) -> Adapter | None:
    """The adapter of `cfg.method`, or None for the full-weight methods."""
    m = cfg.method
    if m == "lora":
        return LoRAAdapter(cfg.lora)
    if m == "rslora":
        return LoRAAdapter(cfg.lora.model_copy(update={"use_rslora": True}))
    if m == "dora":
        return DoRAAdapter(cfg.lora)
    if m == "qlora":
        return QLoRAAdapter(cfg.lora, cfg.qlora, cfg.gradient_checkpointing)
    if m == "adalora":
        return AdaLoRAAdapter(cfg.adalora, total_step=cfg.max_steps)
    if m == "ia3":
        return IA3Adapter(cfg.ia3)
    if m == "prefix":
        return PrefixTuning(cfg.prompt_learning)
    if m == "prompt":
        return PromptTuning(cfg.prompt_learning, tokenizer_dir)
    if m == "ptuning":
        return PTuning(cfg.prompt_learning)
    if m == "bottleneck":
        return BottleneckAdapter(cfg.bottleneck)
    if m in FULL_WEIGHT:
        return None
    raise ValueError(f"unknown train.method {m!r}")


def load_base(cfg: TrainConfig, model: ModelRef):
    """The base model as the method needs it: 4-bit NF4 for QLoRA, `model.dtype` otherwise."""
    if cfg.method == "qlora":
        return QLoRAAdapter(cfg.lora, cfg.qlora).load_base(model)
    return model.load_model()


def apply_method(model, cfg: TrainConfig, trainable_token_ids: list[int] | None = None,
                 tokenizer_dir: Path | None = None):
    """Wrap or freeze `model` for training; new vocabulary rows stay trainable under LoRA-style adapters."""
    adapter = adapter_for(cfg, tokenizer_dir)
    if adapter is not None:
        return adapter.apply(model, trainable_token_ids)
    if cfg.method == "partial":
        freeze_for_partial(model, cfg.partial, trainable_token_ids)
    else:  # full, galore
        model.requires_grad_(True)
    return model


def freeze_for_partial(model, partial: PartialConfig, trainable_token_ids: list[int] | None = None) -> list[str]:
    """Freeze everything but the selected blocks/modules/embeddings/head; returns the names left trainable."""
    n_layers = model.config.get_text_config().num_hidden_layers
    layers = set(partial.layers) | set(range(n_layers - partial.last_n_layers, n_layers))
    if bad := sorted(i for i in layers if not 0 <= i < n_layers):
        raise ValueError(f"partial.layers {bad} out of range for a {n_layers}-layer model")
    if partial.train_head:
        untie_head(model)
    model.requires_grad_(False)
    for name, param in model.named_parameters():
        layer = _LAYER.search(name)
        if (layer and int(layer.group(1)) in layers) or any(s in name for s in partial.modules):
            param.requires_grad_(True)
    if partial.train_embeddings or trainable_token_ids:  # new vocabulary rows need training to mean anything
        model.get_input_embeddings().requires_grad_(True)
    if partial.train_head:
        model.get_output_embeddings().requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def untie_head(model) -> None:
    """Give the output head its own copy of the tied input embeddings, so it can train alone (a new task head)."""
    text = model.config.get_text_config()
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or head.weight.data_ptr() != embed.weight.data_ptr():
        return
    head.weight = torch.nn.Parameter(embed.weight.detach().clone())
    text.tie_word_embeddings = False
    model.config.tie_word_embeddings = False


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count as their unpacked size."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = 0
    for p in model.parameters():
        total += p.numel() * 2 if getattr(p, "quant_state", None) is not None else p.numel()  # 2 x 4-bit per byte
    return trainable, total
