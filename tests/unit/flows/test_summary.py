"""The end-of-run summary: what `conclude`, the chain and best-of-N return, as tables."""
from flows.summary import fmt, render, table

RUN = "f327e7e91303434682e273d07c89a781"
FINETUNE = {
    "mlflow_run_id": RUN, "run_dir": f"/w/runs/runs/{RUN}", "package": f"/w/runs/runs/{RUN}/package/adapter",
    "report": f"/w/runs/runs/{RUN}/package/report/report.html",
    "links": {"mlflow": f"http://127.0.0.1:5000/#/experiments/1/runs/{RUN}",
              "prefect": "http://127.0.0.1:4200/runs/flow-run/e245d2bf"},
    "registered_version": "4", "aliases": ["candidate", "champion"],
    "base": {"perplexity": 66.97, "mmlu_cloze": 0.2631578947368421},
    "eval": {"perplexity": 62.73012281249813, "mmlu_cloze": 0.24561403508771928, "degenerate_rate": 0.0},
    "deltas": {"gen_rougeL": {"base": 0.1097, "tuned": 0.1525, "delta": 0.0429, "ci_low": 0.02, "ci_high": 0.07, "n": 2},
               "mmlu_cloze": {"base": 0.2631578947368421, "tuned": 0.24561403508771928, "delta": -0.017543859649122806,
                              "ci_low": -0.05263157894736842, "ci_high": 0.0}},
    "final_loss": 3.9937546253204346,
}


def test_a_finetune_run_ends_with_gate_eval_table_outputs_and_links():
    lines = render(FINETUNE).splitlines()
    assert lines[1] == "Run finished: drift gate passed"
    assert lines[3:9] == [
        "metric             base   tuned    delta  interval",
        "───────────────  ──────  ──────  ───────  ──────────────────",
        "gen_rougeL       0.1097  0.1525  +0.0429  (n=2)",
        "mmlu_cloze       0.2632  0.2456  -0.0175  [-0.0526, +0.0000]",
        "perplexity        66.97   62.73  -4.2399",
        "degenerate_rate          0.0000",
    ]
    assert lines[10:-1] == [
        "final loss   3.9938",
        "registered   version 4 @candidate @champion",
        f"package      /w/runs/runs/{RUN}/package/adapter",
        f"report       /w/runs/runs/{RUN}/package/report/report.html",
        f"run folder   /w/runs/runs/{RUN}",
        f"MLflow run   http://127.0.0.1:5000/#/experiments/1/runs/{RUN}",
        "Prefect run  http://127.0.0.1:4200/runs/flow-run/e245d2bf",
    ]


def test_without_links_or_report_the_run_id_stands_in():
    plain = {k: v for k, v in FINETUNE.items() if k not in ("links", "report")}
    text = render(plain)
    assert f"MLflow run  {RUN}" in text and "report" not in text and "Prefect" not in text


def test_a_chain_shows_a_block_per_stage_then_the_chain():
    text = render({"mlflow_run_id": "parent", "run_dir": "/w/runs/runs/parent", "verdict": "passed",
                   "package": "/w/b/package", "stages": {"sft": FINETUNE, "dpo": FINETUNE}})
    assert text.count("drift gate passed") == 2
    assert text.index("Stage sft:") < text.index("Stage dpo:") < text.index("Chain finished: passed")
    assert "package        /w/b/package" in text


def test_other_flows_get_keys_values_and_row_tables():
    text = render({"mlflow_run_id": "abc", "best": "/w/best.jsonl",
                   "table": [{"n": 1, "mean_reward": 0.12345, "win_rate_vs_greedy": 0.5},
                             {"n": 8, "mean_reward": 0.5, "win_rate_vs_greedy": 0.6125}]})
    assert "best           /w/best.jsonl" in text
    assert "table:\nn  mean_reward  win_rate_vs_greedy\n─  ───────────  ──────────────────\n" \
           "1       0.1235              0.5000\n8       0.5000              0.6125" in text


def test_numbers_are_rounded_for_reading():
    assert [fmt(0.123456), fmt(62.7301), fmt(1234.56), fmt(-0.01754, signed=True), fmt(3), fmt(None)] == \
           ["0.1235", "62.73", "1234.6", "-0.0175", "3", "-"]


def test_table_right_aligns_number_columns():
    assert table(["a", "n"], [["x", "1"], ["yy", "10"]], right=(1,)) == "a    n\n──  ──\nx    1\nyy  10"
