"""Direct preference optimisation on (prompt, chosen, rejected) pairs, through TRL's DPOTrainer.

With the policy's and the reference's summed log-probs of each reply, the pair's score is
    Δ = [log π(chosen) - log π_ref(chosen)] - [log π(rejected) - log π_ref(rejected)]
and `train.dpo.loss_type` picks the loss per pair:
    sigmoid   -log σ(βΔ)                                        (DPO)
    hinge     max(0, 1 - βΔ)                                    (SLiC)
    ipo       (Δ/len - 1/(2β))², Δ per completion token         (IPO; TRL's length normalisation)
    robust    [-(1-ε) log σ(βΔ) + ε log σ(-βΔ)] / (1 - 2ε)      (labels flipped with probability ε)
`rpo_alpha` adds α × the mean NLL of the chosen reply (RPO), against chosen and rejected likelihoods both falling.

The reference: with an adapter, the base with the adapter disabled (no second copy in memory); with a full-weight
method, a frozen copy, or log-probs precomputed once before training (`precompute_ref_log_probs`).
"""
from __future__ import annotations

from pathlib import Path

from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer as TRLDPOTrainer

from tasks.model import ModelRef
from tasks.training.callbacks import PreferenceMonitor
from tasks.training.common import (TrainResult, load_for_training, load_reference, make_trainer, run_trainer,
                                   training_args)
from tasks.training.config import TrainConfig
from tasks.training.preference_data import load_pairs


def dpo_args(cfg: TrainConfig, out_dir: Path, seed: int = 0) -> TRLDPOConfig:
    d = cfg.dpo
    losses, weights = [d.loss_type], [1.0]
    if d.rpo_alpha:
        losses, weights = [*losses, "sft"], [*weights, d.rpo_alpha]
    return training_args(cfg, out_dir, seed, TRLDPOConfig, beta=d.beta, loss_type=losses, loss_weights=weights,
                         label_smoothing=d.label_smoothing, max_length=cfg.max_length,
                         precompute_ref_log_probs=d.precompute_ref_log_probs)


def build_trainer(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                  logger=None, seed: int = 0, ref_model=None, callbacks: list | None = None) -> TRLDPOTrainer:
    policy, tokenizer = load_for_training(cfg, model, tokenizer_dir, seed)
    if ref_model is None:
        ref_model = load_reference(cfg, model, tokenizer, tokenizer_dir)
    return make_trainer(TRLDPOTrainer, cfg, policy, tokenizer, dpo_args(cfg, Path(out_dir), seed),
                        load_pairs(train_path), logger, [PreferenceMonitor(logger), *(callbacks or [])],
                        ref_model=ref_model)


def train_dpo(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
              logger=None, seed: int = 0, ref_model=None, callbacks: list | None = None) -> TrainResult:
    trainer = build_trainer(cfg, model, tokenizer_dir, train_path, out_dir, logger=logger, seed=seed,
                            ref_model=ref_model, callbacks=callbacks)
    return run_trainer(trainer, cfg, out_dir, logger)
