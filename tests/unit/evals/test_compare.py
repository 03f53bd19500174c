import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from evals.compare import compare_runs, differing_params, main


def _log_run(experiment_id: str, name: str, lr: float, losses: list[float], acc: float) -> str:
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params({"lr": lr, "seed": 0, "method": "lora|qlora" if name == "b" else "lora"})
        for step, loss in enumerate(losses):
            mlflow.log_metric("train_loss", loss, step=step)
        mlflow.log_metric("mmlu", acc)
    return run.info.run_id


@pytest.fixture()
def two_runs(mlflow_uri):
    # an explicit experiment id, not mlflow.set_experiment: that one leaks into later tests' fresh DBs
    exp = mlflow.create_experiment("compare-test")
    return _log_run(exp, "a", 1e-4, [2.0, 1.5, 1.2], 0.31), _log_run(exp, "b", 3e-4, [2.0, 1.3, 0.9], 0.29)


def test_compare_writes_table_naming_both_runs(two_runs, tmp_path):
    a, b = two_runs
    path = compare_runs([a, b], tmp_path)
    text = path.read_text()
    assert path.name == "comparison.md"
    assert f"a ({a})" in text and f"b ({b})" in text
    params = text.split("## Params that differ")[1].split("## Final metrics")[0]
    assert "| lr | 0.0001 | 0.0003 |" in params
    assert "| method | lora | lora\\|qlora |" in params  # pipe escaped inside a cell
    assert "seed" not in params  # identical everywhere -> not listed
    metrics = text.split("## Final metrics")[1]
    assert "| mmlu | 0.31 | 0.29 |" in metrics and "| train_loss | 1.2 | 0.9 |" in metrics
    # train_loss has a history -> plotted with both runs; mmlu is a single point -> not plotted
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["train_loss.png"]
    assert "![train_loss](train_loss.png)" in text


def test_cli_entry_point(two_runs, tmp_path, mlflow_uri, capsys):
    a, b = two_runs
    path = main([a, b, "--out", str(tmp_path / "cmp"), "--tracking-uri", mlflow_uri])
    assert capsys.readouterr().out.strip() == str(path)
    assert a in path.read_text()


def test_module_is_runnable():
    root = Path(__file__).resolve().parents[3]
    res = subprocess.run([sys.executable, "-m", "evals.compare", "--help"], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0 and "RUN_ID" in res.stdout and "--out" in res.stdout


def test_differing_params_treats_absent_as_different():
    assert differing_params([{"a": "1", "b": "2"}, {"a": "1"}]) == {"b": ["2", "—"]}
