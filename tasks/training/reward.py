"""Reward model: a scalar score head on the language model, trained on preference pairs with the Bradley-Terry loss

    loss = -log σ(r(prompt, chosen) - r(prompt, rejected))

through TRL's RewardTrainer. LoRA-family methods train the adapters plus the new head (PEFT `modules_to_save`);
full fine-tuning trains everything. Either way the result is saved as one sequence-classification model folder
(adapter folded in, tokenizer beside it), which `eval.reward_model`, best-of-N and PPO load by path or model URI.
"""
from __future__ import annotations

from pathlib import Path

import torch
from peft import get_peft_model
from trl import RewardConfig, RewardTrainer

from tasks.model import ModelRef, torch_dtype
from tasks.training.common import TrainResult, make_trainer, run_trainer, training_args
from tasks.training.config import FULL_WEIGHT, TrainConfig
from tasks.training.methods import adapter_for, freeze_for_partial
from tasks.training.preference_data import load_pairs
from tasks.vocab import apply_extension


def load_scorer(model: ModelRef, tokenizer):
    """The base model with a fresh one-output score head (the last real token's hidden state -> a reward)."""
    from transformers import AutoModelForSequenceClassification

    scorer = AutoModelForSequenceClassification.from_pretrained(
        model.path, num_labels=1, dtype=torch_dtype(model.dtype), trust_remote_code=model.trust_remote_code,
        use_safetensors=True)
    scorer.config.pad_token_id = tokenizer.pad_token_id  # the head finds the last real token by the pad id
    return scorer


def train_reward(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                 logger=None, seed: int = 0, callbacks: list | None = None) -> TrainResult:
    tokenizer = model.load_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    scorer = load_scorer(model, tokenizer)
    new_ids = apply_extension(scorer, tokenizer, Path(tokenizer_dir))
    if cfg.method in FULL_WEIGHT:
        if cfg.method == "partial":
            freeze_for_partial(scorer, cfg.partial, new_ids)
            scorer.score.requires_grad_(True)
    else:
        peft_config = adapter_for(cfg).peft_config()
        peft_config.task_type, peft_config.modules_to_save = "SEQ_CLS", ["score"]
        scorer = get_peft_model(scorer, peft_config)
    args = training_args(cfg, Path(out_dir), seed, RewardConfig, max_length=cfg.max_length)
    trainer = make_trainer(RewardTrainer, cfg, scorer, tokenizer, args, load_pairs(train_path), logger, callbacks)
    result = run_trainer(trainer, cfg, out_dir, logger)
    if result.model_dir is not None:
        return result
    model_dir = Path(out_dir) / "model"  # one folder that loads with AutoModelForSequenceClassification
    trainer.model.merge_and_unload().save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    return result.model_copy(update={"model_dir": model_dir, "adapter_dir": None})
