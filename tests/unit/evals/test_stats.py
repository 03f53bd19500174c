import numpy as np
import pytest

from evals.stats import (
    bootstrap_means, ci_fields, mean_ci, paired_bootstrap, paired_win_rate, perplexity_ci, win_outcomes,
)


def test_identical_scores_give_zero_delta_and_degenerate_interval():
    scores = np.random.default_rng(1).integers(0, 2, size=500)
    ci = paired_bootstrap(scores, scores.copy(), n_resamples=500)
    assert (ci.estimate, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert ci.n == 500 and not ci.excludes_zero()


def test_known_delta_is_inside_interval_and_zero_is_not():
    # tuned gains exactly 300 of 1000 items -> delta 0.3; normal-approx half width 1.96*sqrt(.3*.7/1000) = 0.028
    base = np.zeros(1000)
    tuned = np.zeros(1000)
    tuned[:300] = 1
    ci = paired_bootstrap(base, tuned, n_resamples=2000, seed=3)
    assert ci.estimate == pytest.approx(0.3)
    assert ci.low < 0.3 < ci.high and ci.excludes_zero()
    assert ci.low == pytest.approx(0.3 - 0.0284, abs=0.006)
    assert ci.high == pytest.approx(0.3 + 0.0284, abs=0.006)


def test_pairing_tightens_interval_versus_unpaired_means():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, size=400).astype(float)
    tuned = base.copy()
    tuned[np.flatnonzero(base == 0)[:20]] = 1  # +0.05 on otherwise identical items
    paired = paired_bootstrap(base, tuned, seed=1)
    single = mean_ci(tuned, seed=1)
    assert paired.estimate == pytest.approx(0.05)
    assert paired.low > 0  # significant only because the items are paired
    assert (paired.high - paired.low) < (single.high - single.low) / 2


def test_mean_ci_matches_wald_interval_for_bernoulli():
    scores = np.r_[np.ones(600), np.zeros(400)]
    ci = mean_ci(scores, confidence=0.9, n_resamples=4000, seed=7)
    half = 1.645 * np.sqrt(0.6 * 0.4 / 1000)
    assert ci.estimate == pytest.approx(0.6)
    assert ci.low == pytest.approx(0.6 - half, abs=0.005) and ci.high == pytest.approx(0.6 + half, abs=0.005)


def test_seed_makes_resampling_reproducible():
    values = np.arange(10, dtype=float)
    a, b = bootstrap_means(values, 50, seed=5), bootstrap_means(values, 50, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, bootstrap_means(values, 50, seed=6))


def test_chunked_resampling_fills_every_resample(monkeypatch):
    import evals.stats

    monkeypatch.setattr(evals.stats, "_MAX_CELLS", 30)  # 3 resamples per chunk, last chunk partial
    means = bootstrap_means(np.arange(10, dtype=float), 1000, seed=0)
    assert means.shape == (1000,) and means.min() >= 0 and means.max() <= 9
    assert means.mean() == pytest.approx(4.5, abs=0.1)


def test_win_rate_counts_ties_as_half():
    base = np.array([0.1, 0.5, 0.5, 0.9])
    tuned = np.array([0.2, 0.5, 0.4, 0.9])
    np.testing.assert_array_equal(win_outcomes(base, tuned), [1.0, 0.5, 0.0, 0.5])
    ci = paired_win_rate(base, tuned, n_resamples=200)
    assert ci.estimate == pytest.approx(0.5) and 0.0 <= ci.low <= 0.5 <= ci.high <= 1.0
    assert win_outcomes([0.0], [0.05], tie_tol=0.1).tolist() == [0.5]


def test_rejects_unpaired_or_invalid_inputs():
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0], confidence=1.0)
    with pytest.raises(ValueError, match="non-empty"):
        mean_ci([])


def test_perplexity_ci_pools_tokens_per_resample():
    # two rows: 2 nats over 1 token, 4 nats over 3 tokens. Pooled: exp(6/4); a resample holds row 0 twice (exp 2),
    # row 1 twice (exp 4/3) or one of each (exp 6/4), each pure case with probability 1/4, so the 95% bounds are them.
    ci = perplexity_ci([2.0, 4.0], [1, 3], n_resamples=2000, seed=0)
    assert ci.estimate == pytest.approx(np.exp(1.5)) and ci.n == 2
    assert ci.low == pytest.approx(np.exp(4 / 3)) and ci.high == pytest.approx(np.exp(2.0))
    assert ci.estimate != pytest.approx(np.mean(np.exp([2.0, 4 / 3])))  # pooled, not a mean of row perplexities


def test_perplexity_ci_matches_a_plain_loop_and_drops_empty_rows():
    rng = np.random.default_rng(4)
    counts = rng.integers(1, 40, size=50).astype(float)
    nll = counts * rng.uniform(1.5, 3.0, size=50)
    ci = perplexity_ci(np.r_[nll, 0.0], np.r_[counts, 0], n_resamples=500, confidence=0.9, seed=2)
    idx = np.random.default_rng(2).integers(0, 50, size=(500, 50))  # the same draws, one resample at a time
    expected = np.quantile([np.exp(nll[i].sum() / counts[i].sum()) for i in idx], [0.05, 0.95])
    assert (ci.low, ci.high) == pytest.approx(tuple(expected))
    assert ci.estimate == pytest.approx(np.exp(nll.sum() / counts.sum())) and ci.n == 50  # the empty row dropped
    assert ci.low < ci.estimate < ci.high


def test_perplexity_ci_same_rate_everywhere_is_exact():
    ci = perplexity_ci([2.0, 6.0, 10.0], [1, 3, 5], n_resamples=300)
    assert ci.estimate == ci.low == ci.high == pytest.approx(np.exp(2.0))


def test_perplexity_ci_rejects_bad_inputs():
    with pytest.raises(ValueError, match="one token count per row"):
        perplexity_ci([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="no scored tokens"):
        perplexity_ci([0.0, 0.0], [0, 0])
    with pytest.raises(ValueError, match=">= 0"):
        perplexity_ci([1.0], [-1])


def test_ci_fields_carry_the_item_count():
    ci = mean_ci([0.0, 1.0, 1.0, 1.0], n_resamples=200)
    assert ci_fields("acc", ci) == {"acc": 0.75, "acc_ci_low": ci.low, "acc_ci_high": ci.high, "acc_n": 4.0}
