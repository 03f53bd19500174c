"""Best-of-N sampling: draw N replies per prompt from the policy, score each with a reward model, keep the best.

    sampler = BestOfNSampler(policy="embedded:smollm2-135m-instruct", reward_model="runs/runs/<id>/train/model", n=4)
    best = sampler.generate(prompts)        # prompts: lists of chat turns ending with a user turn

`policy` is a model reference (HF id, folder, ModelRef) or a loaded model with its `tokenizer`; `reward_model` is a
folder written by the reward recipe or a loaded `evals.winrate.RewardJudge`.

Sampling draws from the policy's full distribution (temperature 1, no top-k, no top-p), so the best of N is a
selection from what the policy would say, not from a truncated distribution. The report compares, for each N, the
mean reward of the best of the first N samples with greedy decoding, and the best-of-N win-rate over greedy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from evals.stats import paired_win_rate
from tasks.schema import Section


class BestOfNConfig(Section):
    policy: str | None = None
    """Policy to sample from: a package folder or MLflow model URI (default: the `model:` section)."""
    reward_model: str
    """Reward model: a folder written by the `reward` recipe, or its MLflow model URI (`models:/<name>@champion`)."""
    n: list[int] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=1)
    """Report the best of the first N samples for each of these; the largest is the number drawn per prompt."""
    prompts: int = Field(32, gt=0)  # validation prompts used
    max_new_tokens: int = Field(64, gt=0)
    temperature: float = Field(1.0, gt=0)
    seed: int = 0


class BestOfNSampler:
    def __init__(self, policy, reward_model, n: int = 4, *, tokenizer=None, max_new_tokens: int = 64,
                 temperature: float = 1.0, seed: int = 0):
        from evals.winrate import RewardJudge
        from tasks.model import ModelRef

        if isinstance(policy, (str, ModelRef)):
            ref = policy if isinstance(policy, ModelRef) else ModelRef.of(policy)
            policy, tokenizer = ref.load_model(), ref.load_tokenizer()
        if tokenizer is None:
            raise ValueError("a loaded policy needs its tokenizer")
        self.policy, self.tokenizer = policy.eval(), tokenizer
        self.judge = RewardJudge(reward_model) if isinstance(reward_model, (str, Path)) else reward_model
        self.n, self.max_new_tokens, self.temperature, self.seed = n, max_new_tokens, temperature, seed

    def sample(self, prompts: list[list[dict]]) -> list[list[str]]:
        """`n` replies per prompt, sampled from the full distribution."""
        import torch  # here, not at the top: the config module imports BestOfNConfig

        torch.manual_seed(self.seed)
        out = []
        with torch.no_grad():
            for turns in prompts:
                enc = self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, return_dict=True,
                                                         return_tensors="pt")
                ids = self.policy.generate(**enc, do_sample=True, temperature=self.temperature, top_k=0, top_p=1.0,
                                           num_return_sequences=self.n, max_new_tokens=self.max_new_tokens,
                                           pad_token_id=self.tokenizer.pad_token_id)
                start = enc["input_ids"].shape[1]
                out.append([self.tokenizer.decode(row[start:], skip_special_tokens=True).strip() for row in ids])
        return out

    def score(self, prompts: list[list[dict]], samples: list[list[str]]) -> np.ndarray:
        """Rewards, shape (prompts, n)."""
        flat_prompts = [p for p, replies in zip(prompts, samples) for _ in replies]
        flat = self.judge.score(flat_prompts, [r for replies in samples for r in replies])
        return flat.reshape(len(prompts), -1)

    def generate(self, prompts: list[list[dict]]) -> list[str]:
        """The highest-reward reply of `n` samples, per prompt."""
        samples = self.sample(prompts)
        best = self.score(prompts, samples).argmax(axis=1)
        return [replies[i] for replies, i in zip(samples, best)]


def best_of_n_table(rewards: np.ndarray, greedy: np.ndarray, ns: list[int], *, n_resamples: int = 2000,
                    confidence: float = 0.95, seed: int = 0) -> list[dict]:
    """Per N: mean reward of the best of the first N samples, greedy's mean, and best-of-N's win-rate over greedy
    (ties half) with its interval."""
    rows = []
    for n in sorted(ns):
        best = rewards[:, :n].max(axis=1)
        ci = paired_win_rate(greedy, best, n_resamples=n_resamples, confidence=confidence, seed=seed)
        rows.append({"n": n, "mean_reward": float(best.mean()), "greedy_mean_reward": float(greedy.mean()),
                     "win_rate_vs_greedy": ci.estimate, "win_rate_ci_low": ci.low, "win_rate_ci_high": ci.high})
    return rows
