import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from evals.drift import DriftConfig, drift_gate


def _flip(scores: np.ndarray, n: int, to: int) -> np.ndarray:
    """Copy of `scores` with the first `n` items not already equal to `to` set to `to`."""
    out = scores.copy()
    out[np.flatnonzero(out != to)[:n]] = to
    return out


@pytest.fixture()
def base() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random(1000) < 0.6).astype(float)


def test_significant_large_drop_blocks(base):
    tuned = _flip(base, 80, to=0)  # -0.08, far outside noise on paired items
    verdict = drift_gate({"mmlu": base}, {"mmlu": tuned}, DriftConfig(max_drop={"mmlu": 0.02}))
    assert not verdict.passed
    (row,) = verdict.rows
    assert row.blocked and row.delta == pytest.approx(-0.08)
    assert row.ci_high < 0 and row.ci_low < -0.08 < row.ci_high
    assert row.base_mean == pytest.approx(base.mean()) and row.tuned_mean == pytest.approx(base.mean() - 0.08)
    assert row.n == 1000 and row.threshold == 0.02
    assert len(verdict.reasons) == 1 and verdict.reasons[0].startswith("mmlu: dropped 0.0800")


def test_significant_but_small_drop_passes(base):
    tuned = _flip(base, 10, to=0)  # -0.01: significant when paired, yet under the 0.02 threshold
    verdict = drift_gate({"mmlu": base}, {"mmlu": tuned}, DriftConfig(max_drop={"mmlu": 0.02}))
    (row,) = verdict.rows
    assert row.ci_high < 0 and row.delta == pytest.approx(-0.01)
    assert verdict.passed and not row.blocked and verdict.reasons == []


def test_large_but_noisy_drop_passes():
    # 10 items: a 0.1 drop (1 item) is not significant, the interval covers 0
    base = np.ones(10)
    tuned = _flip(base, 1, to=0)
    verdict = drift_gate({"mmlu": base}, {"mmlu": tuned}, DriftConfig(max_drop={"mmlu": 0.02}))
    (row,) = verdict.rows
    assert row.delta == pytest.approx(-0.1) and row.ci_high == 0.0
    assert verdict.passed and not row.blocked


def test_ungated_metrics_are_reported_not_gated(base):
    tuned = _flip(base, 200, to=0)
    cfg = DriftConfig(max_drop={"mmlu": 0.02})
    verdict = drift_gate({"mmlu": base, "rougeL": base}, {"mmlu": base, "rougeL": tuned}, cfg)
    rows = {r.metric: r for r in verdict.rows}
    assert verdict.passed
    assert rows["rougeL"].threshold is None and not rows["rougeL"].blocked
    assert rows["rougeL"].delta == pytest.approx(-0.2) and rows["rougeL"].ci_high < 0


def test_gated_metric_missing_fails_unless_allowed(base):
    data = {"mmlu": base}
    verdict = drift_gate(data, data, DriftConfig())  # default also gates truthfulqa_mc1/mc2
    assert not verdict.passed
    assert verdict.reasons == ["gated metrics not evaluated: truthfulqa_mc1, truthfulqa_mc2"]
    assert drift_gate(data, data, DriftConfig(require_all=False)).passed


def test_mismatched_metric_sets_raise(base):
    with pytest.raises(ValueError, match="different metrics"):
        drift_gate({"mmlu": base}, {"mmlu": base, "extra": base}, DriftConfig())


def test_config_from_yaml_and_rejects_typos():
    cfg = DriftConfig.model_validate(
        yaml.safe_load("max_drop: {mmlu: 0.01}\nconfidence: 0.9\nn_resamples: 500\nseed: 3\n")
    )
    assert cfg.max_drop == {"mmlu": 0.01} and cfg.confidence == 0.9 and cfg.n_resamples == 500
    assert DriftConfig().max_drop == {"mmlu": 0.02, "truthfulqa_mc1": 0.02, "truthfulqa_mc2": 0.02}
    with pytest.raises(ValidationError):
        DriftConfig.model_validate({"max_drops": {"mmlu": 0.01}})
    with pytest.raises(ValidationError, match=">= 0"):
        DriftConfig(max_drop={"mmlu": -0.1})
    with pytest.raises(ValidationError):
        DriftConfig(confidence=1.5)
