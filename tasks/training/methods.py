"""Turn a base model into the trainable model of the configured fine-tuning method (thin layer over PEFT)."""
from __future__ import annotations

from peft import LoraConfig, get_peft_model

from tasks.training.config import TrainConfig


def peft_config(cfg: TrainConfig):
    if cfg.method == "lora":
        lora = cfg.lora
        return LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
            use_rslora=lora.use_rslora, bias="none", task_type="CAUSAL_LM",
        )
    raise ValueError(f"unknown train.method {cfg.method!r}")


def apply_method(model, cfg: TrainConfig, trainable_token_ids: list[int] | None = None):
    """Wrap `model` for training; new vocabulary rows stay trainable under adapters."""
    config = peft_config(cfg)
    if trainable_token_ids:
        config.trainable_token_indices = {"embed_tokens": list(trainable_token_ids)}
    return get_peft_model(model, config)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
