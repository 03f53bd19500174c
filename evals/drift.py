"""Capability-drift gate: did fine-tuning make the model measurably worse at what it could already do?

A metric blocks only when the drop is both *significant* (the whole paired-bootstrap interval of
tuned - base lies below 0) and *material* (the point drop exceeds its threshold). Requiring both
keeps small eval sets from failing on noise and large ones from failing on a trivial but
significant 0.1-point dip. Every metric is read as higher-is-better (accuracies, ROUGE, BLEU).
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field, field_validator

from evals.stats import paired_bootstrap
from tasks.schema import Section


class DriftConfig(Section):
    """Thresholds of the drift gate; metrics absent from `max_drop` are reported but never block."""

    max_drop: dict[str, float] = Field(
        default_factory=lambda: {"mmlu": 0.02, "truthfulqa_mc1": 0.02, "truthfulqa_mc2": 0.02},
        description="Largest tolerated drop (absolute, same scale as the metric) per metric.",
    )
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="Level of the bootstrap interval.")
    n_resamples: int = Field(2000, ge=100, description="Bootstrap resamples; more = steadier bounds, slower.")
    seed: int = Field(0, description="Seed of the resampling, so a verdict is reproducible.")
    require_all: bool = Field(True, description="Fail when a gated metric was not evaluated at all.")

    @field_validator("max_drop")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        negative = {k: v for k, v in value.items() if v < 0}
        if negative:
            raise ValueError(f"thresholds must be >= 0, got {negative}")
        return value


class MetricRow(BaseModel):
    """One metric of the verdict: means, paired delta with its interval, and whether it blocked."""

    metric: str
    n: int
    base_mean: float
    tuned_mean: float
    delta: float
    ci_low: float
    ci_high: float
    threshold: float | None
    blocked: bool


class GateVerdict(BaseModel):
    passed: bool
    reasons: list[str]
    rows: list[MetricRow]
    confidence: float


def drift_gate(
    per_item_base: dict[str, np.ndarray], per_item_tuned: dict[str, np.ndarray], cfg: DriftConfig
) -> GateVerdict:
    """Compare per-item scores of base and tuned on the same items, metric by metric."""
    if set(per_item_base) != set(per_item_tuned):
        raise ValueError(
            f"base and tuned were scored on different metrics: {sorted(per_item_base)} vs {sorted(per_item_tuned)}"
        )
    rows, reasons = [], []
    pct = round(cfg.confidence * 100)
    for metric in sorted(per_item_base):
        base, tuned = np.asarray(per_item_base[metric], float), np.asarray(per_item_tuned[metric], float)
        ci = paired_bootstrap(base, tuned, n_resamples=cfg.n_resamples, confidence=cfg.confidence, seed=cfg.seed)
        threshold = cfg.max_drop.get(metric)
        blocked = threshold is not None and ci.high < 0 and -ci.estimate > threshold
        if blocked:
            reasons.append(
                f"{metric}: dropped {-ci.estimate:.4f} ({pct}% CI of delta [{ci.low:.4f}, {ci.high:.4f}]), "
                f"more than the allowed {threshold:.4f}"
            )
        rows.append(
            MetricRow(
                metric=metric, n=ci.n, base_mean=float(base.mean()), tuned_mean=float(tuned.mean()),
                delta=ci.estimate, ci_low=ci.low, ci_high=ci.high, threshold=threshold, blocked=blocked,
            )
        )
    missing = sorted(set(cfg.max_drop) - set(per_item_base))
    if missing and cfg.require_all:
        reasons.append(f"gated metrics not evaluated: {', '.join(missing)}")
    return GateVerdict(passed=not reasons, reasons=reasons, rows=rows, confidence=cfg.confidence)
