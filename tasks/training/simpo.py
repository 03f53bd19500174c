"""SimPO: reference-free, length-normalised preference optimisation, as TRL's CPOTrainer with loss_type=simpo and
no behaviour-cloning term (cpo_alpha=0):

    loss = -log σ(β/|y_w| log π(y_w|x) - β/|y_l| log π(y_l|x) - γ)

The average log-prob is the implicit reward, so longer replies gain nothing by length; γ is the margin the chosen
reply must win by (`train.simpo.beta`, `train.simpo.gamma`).
"""
from __future__ import annotations

from pathlib import Path

from trl.experimental.cpo import CPOConfig, CPOTrainer

from tasks.model import ModelRef
from tasks.training.common import TrainResult, load_for_training, make_trainer, run_trainer, training_args
from tasks.training.config import TrainConfig
from tasks.training.preference_data import load_pairs


def train_simpo(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                logger=None, seed: int = 0, callbacks: list | None = None) -> TrainResult:
    policy, tokenizer = load_for_training(cfg, model, tokenizer_dir, seed)
    args = training_args(cfg, Path(out_dir), seed, CPOConfig, loss_type="simpo", cpo_alpha=0.0, beta=cfg.simpo.beta,
                         simpo_gamma=cfg.simpo.gamma, max_length=cfg.max_length)
    trainer = make_trainer(CPOTrainer, cfg, policy, tokenizer, args, load_pairs(train_path), logger, callbacks)
    return run_trainer(trainer, cfg, out_dir, logger)
