"""What tasks/evaluate.py adds for the report: item counts beside intervals, and the verdict markdown."""
from pathlib import Path

import numpy as np

from evals.drift import DriftConfig, drift_gate
from tasks.evaluate import EvalResult, _markdown, with_counts


def test_with_counts_adds_a_count_per_interval_and_keeps_existing_ones():
    summary = {"classify_accuracy": 0.8, "classify_accuracy_ci_low": 0.7, "classify_accuracy_ci_high": 0.9,
               "classify_macro_f1": 0.6, "classify_macro_f1_ci_low": 0.5, "classify_macro_f1_ci_high": 0.7,
               "classify_macro_f1_n": 12.0, "classify_n": 40.0}
    assert with_counts(summary, 40) == {**summary, "classify_accuracy_n": 40.0}
    assert with_counts({"x": 1.0}, 5) == {"x": 1.0}


def test_markdown_shows_the_count_instead_of_an_interval_from_few_items():
    verdict = drift_gate({"mmlu": np.r_[np.ones(60), np.zeros(40)], "tiny": np.array([1.0, 0.0])},
                         {"mmlu": np.r_[np.ones(50), np.zeros(50)], "tiny": np.array([0.0, 0.0])},
                         DriftConfig(max_drop={}, n_resamples=200))
    result = EvalResult(base={"mmlu": 0.6, "tiny": 0.5}, tuned={"mmlu": 0.5, "tiny": 0.0}, verdict=verdict,
                        report_path=Path("eval_report.json"), samples=[])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in _markdown(result).splitlines() if line.startswith("| ")}
    mmlu = verdict.rows[0]
    assert lines["mmlu"] == f"| mmlu | 0.6000 | 0.5000 | -0.1000 | [{mmlu.ci_low:+.4f}, {mmlu.ci_high:+.4f}] |"
    assert lines["tiny"] == "| tiny | 0.5000 | 0.0000 | -0.5000 | (n=2) |"


def test_markdown_folds_an_interval_into_its_metric_row():
    verdict = drift_gate({}, {}, DriftConfig(max_drop={}, n_resamples=200))
    result = EvalResult(base={"perplexity": 66.97, "perplexity_ci_low": 56.3, "perplexity_ci_high": 80.1,
                              "perplexity_n": 24.0},
                        tuned={"perplexity": 26.05, "perplexity_ci_low": 22.11, "perplexity_ci_high": 30.99,
                               "perplexity_n": 24.0},
                        verdict=verdict, report_path=Path("eval_report.json"), samples=[])
    rows = [line for line in _markdown(result).splitlines() if line.startswith("| perplexity")]
    assert rows == ["| perplexity | 66.9700 | 26.0500 | -40.9200 | tuned [22.1100, 30.9900] |"]
