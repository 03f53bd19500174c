"""Supervised fine-tuning: next-token cross-entropy on the assistant turns of chat rows, through TRL's SFTTrainer.

Read top to bottom: the model with its method and vocabulary extension (common.py), TRL's SFTConfig from the
one shared mapping plus SFT's own knobs (max length, packing, assistant-only loss), the trainer, then the shared
resume/save/summary. AdaLoRA adds its orthogonality penalty to the loss here, since TRL computes the loss.
"""
from __future__ import annotations

from pathlib import Path

from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

from tasks.model import ModelRef
from tasks.training.adapters import adalora_loss
from tasks.training.common import TrainResult, load_for_training, make_trainer, run_trainer, training_args
from tasks.training.config import TrainConfig
from tasks.training.continual import training_data


def load_messages(path: Path):
    """The `messages` column of a prepared JSONL split, as an HF dataset."""
    ds = load_dataset("json", data_files=str(path), split="train")
    return ds.select_columns(["messages"])


def sft_args(cfg: TrainConfig, out_dir: Path, seed: int = 0) -> SFTConfig:
    return training_args(
        cfg, out_dir, seed, SFTConfig,
        max_length=cfg.max_length,
        packing=cfg.packing,
        packing_strategy="bfd",  # best-fit decreasing, whole examples; implies padding-free position ids
        assistant_only_loss=cfg.assistant_only_loss,
    )


def build_trainer(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                  logger=None, seed: int = 0, eval_path: Path | None = None,
                  callbacks: list | None = None) -> SFTTrainer:
    """Tokenizer, model with the method applied, optimizer and data set, ready to `train()`."""
    train_path = training_data(cfg, train_path, out_dir, seed, logger)  # train.continual.strategy=replay: mixed rows
    policy, tokenizer = load_for_training(cfg, model, tokenizer_dir, seed, marked_template=cfg.assistant_only_loss)
    extra = {"compute_loss_func": adalora_loss(policy, cfg.adalora.orth_reg_weight)} if cfg.method == "adalora" else {}
    return make_trainer(SFTTrainer, cfg, policy, tokenizer, sft_args(cfg, Path(out_dir), seed),
                        load_messages(train_path), logger, callbacks,
                        eval_dataset=load_messages(eval_path) if eval_path else None, **extra)


def train_sft(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
              logger=None, seed: int = 0, eval_path: Path | None = None,
              callbacks: list | None = None) -> TrainResult:
    """Train `cfg.method` on `train_path`; `eval_path` adds a final validation loss; `callbacks` extend the trainer."""
    trainer = build_trainer(cfg, model, tokenizer_dir, train_path, out_dir, logger=logger, seed=seed,
                            eval_path=eval_path, callbacks=callbacks)
    return run_trainer(trainer, cfg, out_dir, logger, evaluate=eval_path is not None)
