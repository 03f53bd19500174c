"""Classifier scores: accuracy and macro-F1 by hand, intervals around them, the majority baseline."""
import pytest

from evals.classification import classification_scores


def test_scores_match_a_hand_computation():
    truth = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "b", "a"]
    s = classification_scores(truth, pred, train_labels=["a", "a", "b"], n_resamples=500, confidence=0.9, seed=0,
                              prefix="x_")
    assert s["x_accuracy"] == pytest.approx(4 / 6)
    f1_a, f1_b, f1_c = 2 * (2 / 3 * 2 / 3) / (4 / 3), 2 * (2 / 3 * 1) / (5 / 3), 0.0  # per-class F1 by hand
    assert s["x_macro_f1"] == pytest.approx((f1_a + f1_b + f1_c) / 3)
    assert s["x_accuracy_ci_low"] <= s["x_accuracy"] <= s["x_accuracy_ci_high"]
    assert s["x_macro_f1_ci_low"] <= s["x_macro_f1"] <= s["x_macro_f1_ci_high"]
    assert s["x_majority_baseline"] == pytest.approx(3 / 6) and s["x_n"] == 6
