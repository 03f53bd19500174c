"""ORPO: preference optimisation without a reference model, through TRL's (experimental) ORPOTrainer.

    loss = NLL(chosen) - λ × log σ(log odds(chosen) - log odds(rejected)),   odds(y) = p(y) / (1 - p(y))
with p the length-normalised likelihood of a reply. The SFT term keeps the chosen reply likely; the odds-ratio term
pushes the rejected one down relative to it. λ is `train.orpo.beta`.
"""
from __future__ import annotations

from pathlib import Path

from trl.experimental.orpo import ORPOConfig as TRLORPOConfig
from trl.experimental.orpo import ORPOTrainer as TRLORPOTrainer

from tasks.model import ModelRef
from tasks.training.common import TrainResult, load_for_training, make_trainer, run_trainer, training_args
from tasks.training.config import TrainConfig
from tasks.training.preference_data import load_pairs


def train_orpo(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
               logger=None, seed: int = 0, callbacks: list | None = None) -> TrainResult:
    policy, tokenizer = load_for_training(cfg, model, tokenizer_dir, seed)
    args = training_args(cfg, Path(out_dir), seed, TRLORPOConfig, beta=cfg.orpo.beta, max_length=cfg.max_length)
    trainer = make_trainer(TRLORPOTrainer, cfg, policy, tokenizer, args, load_pairs(train_path), logger, callbacks)
    return run_trainer(trainer, cfg, out_dir, logger)
