"""RLOO (REINFORCE leave-one-out; Ahmadian et al. 2024) through TRL's RLOOTrainer: no value model. For each prompt,
`rloo.num_generations` (k) replies are sampled; each reply's baseline is the mean reward of the other k-1,

    A_i = R_i - 1/(k-1) Σ_{j≠i} R_j,

with R_i the reward minus β · KL(π || π_ref) of the whole reply (the reference being the base with the adapter
disabled), and the policy maximises the clipped ratio objective min(ρA, clip(ρ, 1±ε)A) on whole sequences.
"""
from __future__ import annotations

from pathlib import Path

from trl import RLOOConfig as TRLRLOOConfig
from trl import RLOOTrainer as TRLRLOOTrainer

from tasks.model import ModelRef
from tasks.training.common import TrainResult
from tasks.training.config import TrainConfig
from tasks.training.rl import train_group


def train_rloo(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
               logger=None, seed: int = 0, callbacks: list | None = None, reward=None) -> TrainResult:
    return train_group(TRLRLOOTrainer, TRLRLOOConfig, cfg, model, tokenizer_dir, train_path, out_dir, logger=logger,
                       seed=seed, callbacks=callbacks, reward=reward)
