"""GRPO (Shao et al. 2024) through TRL's GRPOTrainer: no value model. For each prompt, `grpo.num_generations`
replies are sampled and scored; a reply's advantage is its reward standardised within its group,

    A_i = (R_i - mean(R_group)) / std(R_group),

and the policy maximises the clipped ratio objective min(ρA, clip(ρ, 1±ε)A) per token, minus β · KL(π || π_ref)
(k3 estimator, the reference being the base with the adapter disabled). TRL aggregates the token losses with its
default `loss_type` (dapo: over all tokens of the batch, without GRPO's per-sequence length bias).
"""
from __future__ import annotations

from pathlib import Path

from trl import GRPOConfig as TRLGRPOConfig
from trl import GRPOTrainer as TRLGRPOTrainer

from tasks.model import ModelRef
from tasks.training.common import TrainResult
from tasks.training.config import TrainConfig
from tasks.training.rl import train_group


def train_grpo(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
               logger=None, seed: int = 0, callbacks: list | None = None, reward=None) -> TrainResult:
    return train_group(TRLGRPOTrainer, TRLGRPOConfig, cfg, model, tokenizer_dir, train_path, out_dir, logger=logger,
                       seed=seed, callbacks=callbacks, reward=reward)
