"""Bootstrap confidence intervals for eval scores.

Two models scored on the same items are compared *paired*: resampling items (not models) keeps each
item's difficulty on both sides of the delta, so the interval is far tighter than comparing two
independent means. Intervals are percentile bootstrap: no normality assumption, and exact for the
degenerate cases (identical scores give a [0, 0] interval).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Resampled index matrices are built in chunks of at most this many cells, so MMLU-sized inputs
# (14k items x 2k resamples) stay around 30 MB instead of a 200+ MB single allocation.
_MAX_CELLS = 4_000_000

MIN_ITEMS_FOR_CI = 10
"""Fewer items than this and a bootstrap interval is mostly an artefact of resampling a handful of values (2 items
give at most 3 distinct means): reports show the item count instead of the interval."""


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its percentile interval; `n` is the number of items."""

    estimate: float
    low: float
    high: float
    confidence: float
    n: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _as_scores(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-item scores, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite scores")
    return arr


def _check_args(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of `n_resamples` resamples (with replacement) of `values`, vectorised in chunks."""
    rng = np.random.default_rng(seed)
    n = values.size
    chunk = max(1, _MAX_CELLS // n)
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _resampled_sums(columns: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Column sums of `n_resamples` row resamples (with replacement) of `columns` (rows x k), in chunks."""
    rng = np.random.default_rng(seed)
    n = columns.shape[0]
    chunk = max(1, _MAX_CELLS // n)
    out = np.empty((n_resamples, columns.shape[1]), dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = columns[idx].sum(axis=1)
    return out


def _interval(values: np.ndarray, n_resamples: int, confidence: float, seed: int) -> BootstrapCI:
    means = bootstrap_means(values, n_resamples, seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(float(values.mean()), float(low), float(high), confidence, int(values.size))


def mean_ci(scores, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> BootstrapCI:
    """Mean of one model's per-item scores with a percentile bootstrap interval."""
    _check_args(n_resamples, confidence)
    return _interval(_as_scores(scores, "scores"), n_resamples, confidence, seed)


def paired_bootstrap(
    base, tuned, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> BootstrapCI:
    """Mean of (tuned - base) over the same items, with a paired percentile bootstrap interval.

    A negative estimate is a regression. `base[i]` and `tuned[i]` must score the same item.
    """
    _check_args(n_resamples, confidence)
    b, t = _as_scores(base, "base"), _as_scores(tuned, "tuned")
    if b.shape != t.shape:
        raise ValueError(f"paired scores need the same items: base has {b.size}, tuned has {t.size}")
    return _interval(t - b, n_resamples, confidence, seed)


def win_outcomes(base, tuned, *, tie_tol: float = 0.0) -> np.ndarray:
    """Per-item outcome of tuned vs base: win 1, tie 0.5, loss 0 (|diff| <= tie_tol is a tie)."""
    b, t = _as_scores(base, "base"), _as_scores(tuned, "tuned")
    if b.shape != t.shape:
        raise ValueError(f"paired scores need the same items: base has {b.size}, tuned has {t.size}")
    diff = t - b
    return np.where(np.abs(diff) <= tie_tol, 0.5, np.where(diff > 0, 1.0, 0.0))


def paired_win_rate(
    base, tuned, *, tie_tol: float = 0.0, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> BootstrapCI:
    """Win rate of tuned over base (ties count half) with a bootstrap interval; 0.5 means no preference."""
    _check_args(n_resamples, confidence)
    return _interval(win_outcomes(base, tuned, tie_tol=tie_tol), n_resamples, confidence, seed)


def perplexity_ci(nll_sums, token_counts, *, n_resamples: int = 2000, confidence: float = 0.95,
                  seed: int = 0) -> BootstrapCI:
    """exp(sum NLL / sum tokens) with a bootstrap over rows.

    Each resample redraws whole rows and recomputes the pooled ratio, so a long row weighs by its tokens exactly as
    in the point estimate (a mean of per-row perplexities would not). Rows with no scored token carry no evidence
    and are dropped; `n` counts the rows that remain.
    """
    _check_args(n_resamples, confidence)
    nll, counts = _as_scores(nll_sums, "nll_sums"), _as_scores(token_counts, "token_counts")
    if nll.shape != counts.shape:
        raise ValueError(f"one token count per row: {nll.size} NLL sums but {counts.size} counts")
    if np.any(counts < 0):
        raise ValueError("token counts must be >= 0")
    keep = counts > 0
    if not keep.any():
        raise ValueError("no scored tokens in any row")
    nll, counts = nll[keep], counts[keep]
    sums = _resampled_sums(np.stack([nll, counts], axis=1), n_resamples, seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(np.exp(sums[:, 0] / sums[:, 1]), [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(float(np.exp(nll.sum() / counts.sum())), float(low), float(high), confidence, int(nll.size))


def ci_fields(name: str, ci: BootstrapCI) -> dict[str, float]:
    """`name`, `name_ci_low`, `name_ci_high` and `name_n`: how an interval travels in a flat metrics dict (and to
    MLflow); the report reads `name_n` to tell a meaningful interval from one drawn from a handful of items."""
    return {name: ci.estimate, f"{name}_ci_low": ci.low, f"{name}_ci_high": ci.high, f"{name}_n": float(ci.n)}
