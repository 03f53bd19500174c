"""KTO (Kahneman-Tversky optimisation) on unpaired good/bad replies, through TRL's KTOTrainer.

Each reply's implicit reward r = log π(y|x) - log π_ref(y|x) is compared with z, a batch estimate of the KL between
policy and reference (each reply scored under another prompt of the same batch, hence batch_size >= 2):
    desirable     w_d × (1 - σ(β (r - z)))
    undesirable   w_u × (1 - σ(β (z - r)))
Paired data is unpaired: each pair gives one desirable and one undesirable reply. The reference is the base with the
adapter disabled, or for full-weight methods a frozen copy (or log-probs precomputed once).
"""
from __future__ import annotations

from pathlib import Path

from trl import KTOConfig as TRLKTOConfig
from trl import KTOTrainer as TRLKTOTrainer

from tasks.model import ModelRef
from tasks.training.callbacks import PreferenceMonitor
from tasks.training.common import (TrainResult, load_for_training, load_reference, make_trainer, run_trainer,
                                   training_args)
from tasks.training.config import TrainConfig
from tasks.training.preference_data import load_feedback


def kto_args(cfg: TrainConfig, out_dir: Path, seed: int = 0) -> TRLKTOConfig:
    k = cfg.kto
    return training_args(cfg, out_dir, seed, TRLKTOConfig, beta=k.beta, desirable_weight=k.desirable_weight,
                         undesirable_weight=k.undesirable_weight, max_length=cfg.max_length,
                         precompute_ref_log_probs=cfg.dpo.precompute_ref_log_probs)


def train_kto(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
              logger=None, seed: int = 0, callbacks: list | None = None) -> TrainResult:
    policy, tokenizer = load_for_training(cfg, model, tokenizer_dir, seed)
    ref = load_reference(cfg, model, tokenizer, tokenizer_dir)
    trainer = make_trainer(TRLKTOTrainer, cfg, policy, tokenizer, kto_args(cfg, Path(out_dir), seed),
                           load_feedback(train_path), logger, [PreferenceMonitor(logger), *(callbacks or [])],
                           ref_model=ref)
    return run_trainer(trainer, cfg, out_dir, logger)
