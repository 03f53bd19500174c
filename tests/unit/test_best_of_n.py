"""Best-of-N: the sampler returns the reward model's argmax, and the table's best-of-N reward never falls as N grows."""
import numpy as np
import pytest

from tasks.best_of_n import BestOfNSampler, best_of_n_table
from tasks.model import load_model, load_tokenizer


class LengthJudge:
    """Scores a reply by its length: the argmax is known without a model."""

    def score(self, prompts, replies):
        return np.array([float(len(r)) for r in replies])


def test_generate_returns_the_highest_scored_sample(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    sampler = BestOfNSampler(model, LengthJudge(), n=4, tokenizer=tokenizer, max_new_tokens=8, seed=3)
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "where are the logs?"}]]
    samples = sampler.sample(prompts)
    assert [len(s) for s in samples] == [4, 4] and len({*samples[0]}) > 1  # sampled, not greedy
    best = sampler.generate(prompts)  # same seed: the same samples again
    assert best == [max(s, key=len) for s in samples]


def test_table_is_monotone_in_n_and_compares_with_greedy():
    rng = np.random.default_rng(0)
    rewards, greedy = rng.normal(size=(50, 8)), rng.normal(size=50)
    rows = best_of_n_table(rewards, greedy, [1, 2, 4, 8], n_resamples=200)
    means = [r["mean_reward"] for r in rows]
    assert [r["n"] for r in rows] == [1, 2, 4, 8] and means == sorted(means)
    assert means[0] == pytest.approx(rewards[:, 0].mean()) and means[-1] == pytest.approx(rewards.max(1).mean())
    assert rows[-1]["win_rate_vs_greedy"] > rows[0]["win_rate_vs_greedy"]
    assert all(r["win_rate_ci_low"] <= r["win_rate_vs_greedy"] <= r["win_rate_ci_high"] for r in rows)
