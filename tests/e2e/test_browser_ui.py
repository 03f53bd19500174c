"""The browser checks of `tests/browser.py` against cheap real fixtures: an MLflow server on SQLite with a run, its
loss history and a registered version promoted by the project's own `promote`; a Prefect server with its UI and a
two-task flow run against it; a report written by `evals.report.write_report`. Each check is also shown failing on
a wrong name, so a check that passes cannot be one that asserts nothing. Screenshots: runs/test-artifacts/."""
import base64
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tests.browser
from tests.browser import browser_page, check_mlflow_ui, check_prefect_ui, check_report, screenshots_for
from tests.browser import page, shots  # noqa: F401 (fixtures)
from tests.helpers import Server, free_port, mlflow_server

pytestmark = pytest.mark.e2e

LOSS = [(step, 3.0 / step) for step in range(1, 21)]  # falls fast then flattens: a visible curve
FAST_FAIL_MS = 4_000  # negative checks: long enough for a page that does show the thing, short enough to fail fast


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """MLflow on SQLite (job execution off, as `tuneforge ui` runs it) and Prefect with its UI on, both on loopback
    and started side by side: each takes 10-30 s to boot on two cores."""
    from flows.ui import MLFLOW_ENV

    root = tmp_path_factory.mktemp("servers")
    (root / "mlflow").mkdir()
    mlflow_port, prefect_port = free_port(), free_port()
    mlflow = mlflow_server(root / "mlflow", mlflow_port)
    mlflow.env = {**os.environ, **MLFLOW_ENV}
    api = f"http://127.0.0.1:{prefect_port}/api"
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_UI_ENABLED": "true", "PREFECT_UI_API_URL": api,  # the UI's own calls go to this server
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false", "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}
    prefect = Server([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                      "--port", str(prefect_port)], f"{api}/health", env=env, log=root / "prefect.log")
    with ThreadPoolExecutor(2) as pool:
        starting = [pool.submit(server.start) for server in (mlflow, prefect)]
    try:
        for future in starting:
            future.result()
        yield SimpleNamespace(mlflow=f"http://127.0.0.1:{mlflow_port}", prefect=f"http://127.0.0.1:{prefect_port}",
                              prefect_api=api)
    finally:
        mlflow.stop()
        prefect.stop()


@pytest.fixture(scope="module")
def mlflow_ui(servers):
    """Experiment `browser-check` with a finished run and its `train_loss` history, and that run's version of
    `tuneforge-browser` promoted by the pipeline's own rules (first passing version: candidate and champion)."""
    from mlflow import MlflowClient

    from tasks.packaging.promote import promote
    from tasks.tracking import mark_training_experiment

    client = MlflowClient(servers.mlflow)
    exp = client.create_experiment("browser-check")
    mark_training_experiment(client, exp)
    run_id = client.create_run(exp, run_name="tiny-run").info.run_id
    for step, value in LOSS:
        client.log_metric(run_id, "train_loss", value, step=step)
    client.set_terminated(run_id)
    client.create_registered_model("tuneforge-browser")
    version = client.create_model_version("tuneforge-browser", f"runs:/{run_id}/adapter", run_id=run_id).version
    done = promote(client, "tuneforge-browser", version, {"eval_loss": 1.5}, True, ["eval_loss"], {"eval_loss": False})
    assert done["aliases"] == ["candidate", "champion"], done
    return SimpleNamespace(url=servers.mlflow, experiment="browser-check", run_id=run_id, metric="train_loss",
                           model="tuneforge-browser", aliases=done["aliases"])


def test_mlflow_ui_shows_the_experiment_the_loss_chart_and_the_aliases(page, shots, mlflow_ui):
    m = mlflow_ui
    check_mlflow_ui(page, m.url, m.experiment, m.run_id, m.metric, m.model, m.aliases, shots)
    assert [p.name for p in shots.taken] == ["01-experiments.png", "02-experiment.png", "03-run.png",
                                             "04-chart-train_loss.png", "05-model.png"]


def test_mlflow_check_fails_on_an_alias_or_metric_that_is_not_there(page, shots, mlflow_ui):
    m = mlflow_ui
    with pytest.raises(AssertionError, match="alias @production in 'tuneforge-browser'"):
        check_mlflow_ui(page, m.url, m.experiment, m.run_id, m.metric, m.model, ["candidate", "production"], shots,
                        timeout_ms=FAST_FAIL_MS)
    with pytest.raises(AssertionError, match="a chart titled 'eval_loss'"):
        check_mlflow_ui(page, m.url, m.experiment, m.run_id, "eval_loss", m.model, m.aliases, shots,
                        timeout_ms=FAST_FAIL_MS)
    assert {p.name.split("-", 1)[1] for p in shots.taken if "FAILED" in p.name} == {
        "FAILED-model.png", "FAILED-metric-chart.png"}


TINY_FLOW = """
from prefect import flow, task

@task(name="prepare_tiny")
def prepare() -> int:
    return 2

@task(name="train_tiny")
def train(x: int) -> int:
    return 3 * x

@flow(name="browser-check")
def tiny() -> int:
    return train(prepare())

state = tiny(return_state=True)
assert state.is_completed() and state.result() == 6, state
print(state.state_details.flow_run_id)
"""


@pytest.fixture(scope="module")
def prefect_ui(servers, tmp_path_factory):
    """One completed run, against the Prefect server, of a flow with tasks `prepare_tiny` and `train_tiny`. Run in a
    child process: this process's Prefect clients (events, logs) must not outlive the server into later tests."""
    env = {**os.environ, "PREFECT_API_URL": servers.prefect_api,
           "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-client"))}
    done = subprocess.run([sys.executable, "-c", TINY_FLOW], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return SimpleNamespace(url=servers.prefect, flow_run_id=done.stdout.strip().splitlines()[-1],
                           tasks=["prepare_tiny", "train_tiny"])


def test_prefect_ui_shows_the_flow_run_and_its_task_runs(page, shots, prefect_ui):
    check_prefect_ui(page, prefect_ui.url, prefect_ui.flow_run_id, prefect_ui.tasks, shots)
    assert [p.name for p in shots.taken] == ["01-flow-run.png", "02-task-runs.png"]
    with pytest.raises(AssertionError, match="a run of task 'evaluate' in state Completed"):
        check_prefect_ui(page, prefect_ui.url, prefect_ui.flow_run_id, ["prepare_tiny", "evaluate"], shots,
                         timeout_ms=FAST_FAIL_MS)


def _report(out: Path) -> Path:
    """A report from the project's own writer: a loss and a learning-rate plot, a passing gate, one sample."""
    from evals.drift import DriftConfig, drift_gate
    from evals.report import write_report

    scores = np.r_[np.ones(60), np.zeros(40)]
    verdict = drift_gate({"mmlu": scores}, {"mmlu": scores}, DriftConfig(max_drop={"mmlu": 0.02}, n_resamples=200))
    return write_report(out, config={"model": {"name_or_path": "tiny"}}, data_counts={"raw": 40, "kept": 38},
                        history={"train_loss": LOSS, "learning_rate": [(s, 1e-4 / s) for s, _ in LOSS]},
                        verdict=verdict, samples=[{"prompt": "Hi", "base": "Hello", "tuned": "Hello!"}],
                        run_id="0123abcd", links={"MLflow run": "http://127.0.0.1:5000/#/experiments/1"})


def test_report_renders_with_its_plots(page, shots, tmp_path):
    report = _report(tmp_path / "report")
    check_report(page, report, shots, min_plots=2)
    assert [p.name for p in shots.taken] == ["01-report.png"]


def test_report_check_fails_on_a_plot_that_does_not_decode_or_is_missing(page, shots, tmp_path):
    report = _report(tmp_path / "report")
    html = report.read_text()
    first = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html).group(1)
    report.write_text(html.replace(first, base64.b64encode(b"not a png").decode(), 1))
    with pytest.raises(AssertionError, match=r"did not load or are not shown: \['loss'\]$"):
        check_report(page, report, shots)
    with pytest.raises(AssertionError, match="2 images, expected at least 3 plots"):
        check_report(page, _report(tmp_path / "intact"), shots, min_plots=3)


def test_without_chromium_the_page_skips_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(tests.browser, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.skip.Exception, match="no-chromium not found: .*apt-get install -y chromium"):
        with browser_page():
            pass


def test_screenshots_go_under_the_artifacts_folder_named_by_test(monkeypatch, tmp_path):
    monkeypatch.delenv("TUNEFORGE_TEST_ARTIFACTS", raising=False)
    assert screenshots_for("test_x").folder == Path(tests.browser.__file__).parents[1] / "runs" / "test-artifacts" / \
        "screenshots" / "test_x"
    monkeypatch.setenv("TUNEFORGE_TEST_ARTIFACTS", str(tmp_path))
    stale = tmp_path / "screenshots" / "test_y_case-1"
    stale.mkdir(parents=True)
    (stale / "01-old.png").write_bytes(b"")
    fresh = screenshots_for("test_y[case-1]")
    assert fresh.folder == stale and not stale.exists()  # a re-run starts from an empty folder
