"""A reward model's held-out pairwise accuracy: does it score the chosen reply above the rejected one?

Per pair: a win when r(chosen) > r(rejected), a tie when they are equal (counted apart, never as a win), else a
loss. Accuracy = wins / pairs, with a bootstrap interval over pairs.
"""
from __future__ import annotations

import numpy as np

from evals.stats import mean_ci
from evals.winrate import RewardJudge


def pairwise_scores(judge: RewardJudge, pairs: list[dict]) -> dict[str, np.ndarray]:
    """Per pair: `reward_accuracy` (1 win, 0 tie or loss), `reward_tie`, `reward_margin` r(chosen) - r(rejected)."""
    prompts = [p["messages"] for p in pairs]
    chosen = judge.score(prompts, [p["chosen"] for p in pairs])
    rejected = judge.score(prompts, [p["rejected"] for p in pairs])
    margin = chosen - rejected
    return {"reward_accuracy": (margin > 0).astype(float), "reward_tie": (margin == 0).astype(float),
            "reward_margin": margin}


def accuracy_summary(scores: dict[str, np.ndarray], *, n_resamples: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    ci = mean_ci(scores["reward_accuracy"], n_resamples=n_resamples, confidence=confidence, seed=seed)
    return {"reward_accuracy": ci.estimate, "reward_accuracy_ci_low": ci.low, "reward_accuracy_ci_high": ci.high,
            "reward_ties": float(scores["reward_tie"].mean()), "reward_margin": float(scores["reward_margin"].mean()),
            "reward_pairs": float(len(scores["reward_margin"]))}
