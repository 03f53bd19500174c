"""The optimizer: AdamW over parameter groups (layer-wise learning rates, no decay on norms/biases), or LoRA+,
GaLore's projected AdamW, or bitsandbytes' paged AdamW for QLoRA on CUDA.

Built here and handed to the trainer (`optimizers=(opt, None)`) so every method gets the same grouping rules;
the trainer still builds the scheduler and saves/restores the optimizer state in checkpoints.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import torch

from tasks.training.config import LORA_FAMILY, TrainConfig

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_ALIASES = {
    "embeddings": re.compile(r"embed_tokens|wte\.|word_embeddings"),
    "head": re.compile(r"(?:^|\.)lm_head\."),
    "norm": re.compile(r"norm"),
}


def layer_rule(key: str) -> Callable[[str], bool]:
    """Parameter-name predicate of one `layer_lrs` key: an alias, `layers.A-B`, `layers.N`, or a substring."""
    if key in _ALIASES:
        return lambda name: _ALIASES[key].search(name) is not None
    if m := re.fullmatch(r"layers\.(\d+)(?:-(\d+))?", key):
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))

        def in_range(name: str) -> bool:
            layer = _LAYER.search(name)
            return layer is not None and lo <= int(layer.group(1)) <= hi
        return in_range
    return lambda name: key in name


def param_groups(model, cfg: TrainConfig, galore_names: set[str] = frozenset()) -> list[dict]:
    """Trainable parameters grouped by (learning rate, decays, GaLore-projected).

    Weight decay applies to matrices only (norm scales, biases and 1-D adapter vectors are left alone).
    """
    rules = [(key, layer_rule(key), lr) for key, lr in cfg.layer_lrs.items()]
    used: set[str] = set()
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = cfg.learning_rate
        for key, matches, rule_lr in rules:
            if matches(name):
                lr = rule_lr
                used.add(key)
                break
        decay = param.ndim >= 2
        galore = name in galore_names
        group = groups.setdefault((lr, decay, galore), {
            "params": [], "lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0})
        if galore:
            g = cfg.galore
            group.update(rank=g.rank, update_proj_gap=g.update_proj_gap, scale=g.scale, proj_type=g.proj_type)
        group["params"].append(param)
    if unused := [k for k in cfg.layer_lrs if k not in used]:
        raise ValueError(f"train.layer_lrs: {unused} match no trainable parameter")
    return list(groups.values())


def galore_targets(model, cfg: TrainConfig) -> set[str]:
    """Names of the 2-D Linear weights GaLore projects (targets in `galore.target_modules`, never the head)."""
    head = model.get_output_embeddings()
    names = set()
    for module_name, module in model.named_modules():
        if (isinstance(module, torch.nn.Linear) and module is not head and module.weight.requires_grad
                and any(t in module_name for t in cfg.galore.target_modules)):
            names.add(f"{module_name}.weight")
    if not names:
        raise ValueError(f"galore.target_modules {cfg.galore.target_modules} match no Linear layer")
    return names


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.method == "galore":
        from galore_torch import GaLoreAdamW
        from galore_torch.galore_projector import GaLoreProjector

        # the projector lives in the optimizer state; the trainer resumes with torch.load(weights_only=True)
        torch.serialization.add_safe_globals([GaLoreProjector])
        return GaLoreAdamW(param_groups(model, cfg, galore_targets(model, cfg)), lr=cfg.learning_rate)

    optimizer_cls = torch.optim.AdamW
    if cfg.method == "qlora" and cfg.qlora.paged_optimizer and torch.cuda.is_available():
        import bitsandbytes as bnb

        optimizer_cls = bnb.optim.PagedAdamW32bit  # optimizer state pages to CPU RAM under memory pressure
    if cfg.method in LORA_FAMILY and cfg.lora.loraplus_lr_ratio is not None:
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(model, optimizer_cls, lr=cfg.learning_rate,
                                         loraplus_lr_ratio=cfg.lora.loraplus_lr_ratio,
                                         loraplus_weight_decay=cfg.weight_decay)
    return optimizer_cls(param_groups(model, cfg), lr=cfg.learning_rate)
