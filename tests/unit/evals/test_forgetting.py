"""The forgetting table: one row per continual stage with each metric's paired delta, a plot, a markdown table."""
from evals import forgetting


def _delta(base, tuned):
    return {"base": base, "tuned": tuned, "delta": tuned - base, "ci_low": tuned - base - 0.1,
            "ci_high": tuned - base + 0.1}


def test_rows_table_and_plot(tmp_path):
    stages = {"task_a": {"eval": {"perplexity": 3.0}, "deltas": {}},
              "naive": {"eval": {"perplexity": 5.0, "prev_task_perplexity": 9.0},
                        "deltas": {"prev_task_accuracy": _delta(0.8, 0.2), "mmlu_cloze": _delta(0.3, 0.28)}},
              "replay": {"eval": {"perplexity": 5.2, "prev_task_perplexity": 4.0},
                         "deltas": {"prev_task_accuracy": _delta(0.8, 0.7), "mmlu_cloze": _delta(0.3, 0.3)}}}
    rows = forgetting.forgetting_rows(stages, {"naive": "naive", "replay": "replay"})
    assert [r["strategy"] for r in rows] == ["naive", "replay"]
    assert abs(rows[0]["prev_task_accuracy"]["delta"] + 0.6) < 1e-9
    table = forgetting.markdown(rows)
    assert "task A accuracy" in table and "0.800 -> 0.200 (-0.600" in table
    paths = forgetting.write(rows, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
