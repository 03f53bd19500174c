"""Supervised fine-tuning recipe: base model + method + TRL's SFTTrainer, resumable, logged to MLflow.

Read top to bottom: load tokenizer and model, apply vocabulary extension and the method, build the
data set, train (resuming from the last checkpoint in `out_dir` if one exists), save the adapter.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from datasets import load_dataset
from pydantic import BaseModel
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from tasks.model import load_model, load_tokenizer
from tasks.training.callbacks import MLflowMetrics
from tasks.training.config import TrainConfig
from tasks.training.methods import apply_method, count_parameters
from tasks.training.templates import training_chat_template
from tasks.vocab import apply_extension


class TrainResult(BaseModel):
    adapter_dir: Path
    history_path: Path
    trainable_params: int
    total_params: int
    first_loss: float
    final_loss: float
    train_runtime_s: float
    resumed_from: str | None


def load_messages(path: Path):
    """The `messages` column of a prepared JSONL split, as an HF dataset."""
    ds = load_dataset("json", data_files=str(path), split="train")
    return ds.select_columns(["messages"])


def train_sft(cfg: TrainConfig, model_path: str, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
              logger=None, seed: int = 0, dtype: str = "float32", trust_remote_code: bool = False) -> TrainResult:
    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(str(tokenizer_dir), trust_remote_code)
    if cfg.assistant_only_loss:
        template = training_chat_template(tokenizer)
        if template is not None:
            tokenizer.chat_template = template

    torch.manual_seed(seed)
    model = load_model(model_path, dtype, trust_remote_code)
    new_token_ids = apply_extension(model, tokenizer, Path(tokenizer_dir))
    model = apply_method(model, cfg, trainable_token_ids=new_token_ids)
    trainable, total = count_parameters(model)
    if logger:
        logger.log_metrics({"train/trainable_params": trainable, "train/total_params": total})

    args = SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        assistant_only_loss=cfg.assistant_only_loss,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        eval_strategy="no",
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=load_messages(train_path), processing_class=tokenizer,
        callbacks=[MLflowMetrics(logger)],
    )
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    output = trainer.train(resume_from_checkpoint=last)

    adapter_dir = out_dir / "adapter"
    trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
    history = [h for h in trainer.state.log_history if "loss" in h]
    history_path = out_dir / "history.json"
    history_path.write_text(json.dumps(trainer.state.log_history, indent=1))
    return TrainResult(
        adapter_dir=adapter_dir, history_path=history_path, trainable_params=trainable, total_params=total,
        first_loss=history[0]["loss"], final_loss=history[-1]["loss"],
        train_runtime_s=output.metrics.get("train_runtime", 0.0), resumed_from=last,
    )
