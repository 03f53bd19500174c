"""`make services` for real: PostgreSQL, an MLflow server and a Prefect server started by `flows.services` in a
temporary folder on free ports; one `tuneforge run` against them with test_pipeline.py's small limits; what it left
read back through the servers' REST APIs with plain HTTP (as any other client would) and, to show it is PostgreSQL
that holds it, from the databases themselves. The services are stopped at the end and nothing may be left running.

`services_run` keeps what the run left (URLs, ids, report path) in one `ServicesRun`, for more checks on the same run
(tests/browser.py's `check_mlflow_ui`, `check_prefect_ui`, `check_report` take exactly these fields).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flows.services import Services, _alive, _group
from flows.services_config import ServicesConfig, load_services_config
from tests.browser import check_mlflow_ui, check_prefect_ui, check_report, page, shots  # noqa: F401 (fixtures)
from tests.helpers import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT, MODEL = "tuneforge", "smollm2-support-lora"  # lora.yaml's tracking.experiment, registered_model_name
STAGES = ("resolve_model", "prepare_data", "extend_tokenizer", "train", "evaluate", "package")
# test_pipeline.py's limits: every stage on the real model, in minutes
SMALL = ["train.max_steps=12", "train.logging_steps=2", "train.save_steps=6", "eval.benchmarks.mmlu_per_subject=1",
         "eval.benchmarks.mmlu_forms=[cloze]", "eval.benchmarks.truthfulqa_limit=30", "eval.perplexity_max_rows=24",
         "eval.sample_generations=1", "eval.max_new_tokens=24",
         "eval.drift.max_drop={mmlu_cloze: 0.05, truthfulqa_mc2: 0.05}"]


@dataclass
class ServicesRun:
    """One pipeline run on the shared services: where to look, and what to look for."""

    services: Services
    mlflow_url: str
    prefect_api: str
    prefect_ui: str
    experiment: str = EXPERIMENT
    experiment_id: str = ""
    run_id: str = ""
    flow_run_id: str = ""
    run_dir: Path | None = None
    report_path: Path | None = None  # <run dir>/package/report/report.html
    metric: str = "train/loss"
    model: str = MODEL
    aliases: list[str] = field(default_factory=lambda: ["candidate", "champion"])
    task_names: tuple[str, ...] = STAGES
    wall_s: float = 0.0
    output: str = ""


def get(url: str, endpoint: str, **params) -> dict:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}{endpoint}{query}", timeout=30) as response:
        return json.loads(response.read())


def post(url: str, endpoint: str, body: dict) -> dict | list:
    request = urllib.request.Request(f"{url}{endpoint}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def sql(services: Services, database: str, query: str, *args) -> list[tuple]:
    import psycopg2

    pg = services.config.postgres
    with psycopg2.connect(host=services.config.host, port=pg.port, user=pg.user, password=services.password(),
                          dbname=database) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        rows = cur.fetchall()
    conn.close()
    return rows


def _postmaster(services: Services) -> int | None:
    try:
        return int((services.data / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


@pytest.fixture(scope="module")
def services():
    """The project's own `Services.start` on free ports in a fresh folder; stopped, and checked stopped, at the end."""
    if ServicesConfig().postgres.binaries() is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl): apt-get install postgresql")
    # not pytest's tmp_path: its parent is private to root, and the cluster runs as `postgres` when we are root
    root = Path(tempfile.mkdtemp(prefix="tuneforge-services-"))
    root.chmod(0o711)
    ports = {free_port() for _ in range(3)}
    while len(ports) < 3:
        ports.add(free_port())
    pg_port, mlflow_port, prefect_port = sorted(ports)
    svc = Services(load_services_config(overrides=[f"root={root}", f"postgres.port={pg_port}",
                                                   f"mlflow.port={mlflow_port}", f"prefect.port={prefect_port}"]))
    began = time.monotonic()
    try:
        svc.outcomes = svc.start()
        svc.cold_s = time.monotonic() - began
        yield svc
    finally:
        pids = [p for p in (svc.pid("mlflow"), svc.pid("prefect"), _postmaster(svc)) if p]
        svc.stop()
        left = {pid: _group(pid) for pid in pids if _alive(pid) or _group(pid)}
        status = svc.status()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"still running after stop: {left}"
        assert set(status.values()) == {"stopped"}, status


def test_start_is_idempotent_and_a_second_start_is_fast(services):
    cold = {o.name: o for o in services.outcomes}
    assert cold["PostgreSQL"].action == "started" and "initdb" in cold["PostgreSQL"].detail
    assert cold["MLflow"].action == cold["Prefect"].action == "started"
    assert (services.root / "env.mk").read_text().splitlines()[1:] == [
        f"export MLFLOW_TRACKING_URI ?= {services.mlflow_url}", f"export PREFECT_API_URL ?= {services.prefect_api}"]
    databases = sql(services, "postgres", "SELECT datname, oid FROM pg_database ORDER BY datname")
    assert {"mlflow", "prefect"} <= {name for name, _ in databases}
    pids = services.pid("mlflow"), services.pid("prefect"), _postmaster(services)

    began = time.monotonic()
    again = services.start()
    warm_s = time.monotonic() - began
    print(f"\nservices: cold start {services.cold_s:.1f} s, second start {warm_s:.2f} s")
    assert [(o.name, o.action) for o in again] == [("PostgreSQL", "running"), ("MLflow", "running"),
                                                   ("Prefect", "running")]
    assert warm_s < min(10.0, services.cold_s / 2)
    assert (services.pid("mlflow"), services.pid("prefect"), _postmaster(services)) == pids  # nothing restarted
    assert sql(services, "postgres", "SELECT datname, oid FROM pg_database ORDER BY datname") == databases


@pytest.fixture(scope="module")
def services_run(services, shared_data, tmp_path_factory) -> ServicesRun:
    """`tuneforge run conf/smollm2/lora.yaml` as a user runs it after `make services`: the two URLs in its environment,
    nothing else pointing it at the servers."""
    out = tmp_path_factory.mktemp("services-run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env |= {**services.exports(), "PREFECT_HOME": str(out / "prefect")}
    cmd = [str(Path(sys.executable).with_name("tuneforge")), "run", "conf/smollm2/lora.yaml",
           f"run_root={out / 'runs'}", f"data.decontamination.benchmarks_dir={shared_data}",
           f"eval.benchmarks.data_dir={shared_data}", *SMALL]
    began = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    run = ServicesRun(services, services.mlflow_url, services.prefect_api, services.prefect_ui,
                      wall_s=time.monotonic() - began, output=done.stdout + done.stderr)
    assert done.returncode == 0, run.output[-4000:]
    run.experiment_id = get(run.mlflow_url, "/api/2.0/mlflow/experiments/get-by-name",
                            experiment_name=EXPERIMENT)["experiment"]["experiment_id"]
    (found,) = post(run.mlflow_url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [run.experiment_id]})["runs"]
    run.run_id = found["info"]["run_id"]
    tags = {t["key"]: t["value"] for t in found["data"].get("tags", [])}
    run.flow_run_id, run.run_dir = tags["prefect.flow_run_id"], Path(tags["run_dir"])
    run.report_path = run.run_dir / "package" / "report" / "report.html"
    print(f"\npipeline on the services: {run.wall_s:.0f} s")
    return run


def test_the_run_its_metrics_artifacts_and_model_are_on_the_mlflow_server(services_run):
    r = services_run
    run = get(r.mlflow_url, "/api/2.0/mlflow/runs/get", run_id=r.run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["train.method"] == "lora" and params["train.max_steps"] == "12"
    losses = get(r.mlflow_url, "/api/2.0/mlflow/metrics/get-history", run_id=r.run_id, metric_key=r.metric)["metrics"]
    assert len(losses) >= 5 and [m["step"] for m in losses] == sorted(m["step"] for m in losses)
    assert all(0.0 < m["value"] < 20.0 for m in losses)

    def listing(path: str = "") -> set[str]:
        files = get(r.mlflow_url, "/api/2.0/mlflow/artifacts/list", run_id=r.run_id, path=path).get("files", [])
        return {f["path"] for f in files}

    assert {"adapter", "data", "eval", "model", "report", "train"} <= listing()
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/manifest.json"} <= listing(
        "adapter")
    assert "model/MLmodel" in listing("model") and "report/report.html" in listing("report")
    # the server stores them (its --artifacts-destination), and serves back the bytes the run wrote
    assert list((r.services.root / "mlflow-artifacts").rglob("adapter_model.safetensors"))
    with urllib.request.urlopen(f"{r.mlflow_url}/get-artifact?" + urllib.parse.urlencode(
            {"run_id": r.run_id, "path": "report/report.html"}), timeout=30) as response:
        assert response.read() == r.report_path.read_bytes()

    model = get(r.mlflow_url, "/api/2.0/mlflow/registered-models/get", name=r.model)["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model["aliases"]}
    assert set(aliases) == set(r.aliases)
    champion = get(r.mlflow_url, "/api/2.0/mlflow/registered-models/alias", name=r.model,
                   alias="champion")["model_version"]
    assert champion["run_id"] == r.run_id and champion["version"] == aliases["candidate"]
    assert {t["key"]: t["value"] for t in champion["tags"]}["method"] == "lora"
    # PostgreSQL holds it: the run and the alias rows in the mlflow database
    assert sql(r.services, "mlflow", "SELECT status FROM runs WHERE run_uuid = %s", r.run_id) == [("FINISHED",)]
    assert sorted(sql(r.services, "mlflow", "SELECT alias FROM registered_model_aliases WHERE name = %s",
                      r.model)) == [("candidate",), ("champion",)]


def test_the_flow_run_and_its_task_runs_completed_on_the_prefect_server(services_run):
    r = services_run
    flow_run = get(r.prefect_api, f"/flow_runs/{r.flow_run_id}")
    assert flow_run["state_type"] == "COMPLETED"
    tasks = post(r.prefect_api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [r.flow_run_id]}}})
    states = {t["name"].rsplit("-", 1)[0]: t["state_type"] for t in tasks}  # task runs are named <task>-<suffix>
    assert {name: states.get(name) for name in r.task_names} == dict.fromkeys(r.task_names, "COMPLETED")
    assert sql(r.services, "prefect", "SELECT state_type FROM flow_run WHERE id = %s",
               r.flow_run_id) == [("COMPLETED",)]


def test_the_uis_show_the_run_in_a_real_browser(services_run, page, shots):
    """The same run as a person sees it (tests/browser.py, headless chromium): the MLflow experiment, the run's loss
    chart and the registered model's aliases; the Prefect flow run and its task runs; the report with its plots."""
    r = services_run
    check_mlflow_ui(page, r.mlflow_url, r.experiment, r.run_id, r.metric, r.model, r.aliases, shots)
    check_prefect_ui(page, r.prefect_ui, r.flow_run_id, r.task_names, shots)
    check_report(page, r.report_path, shots)


def test_an_outage_of_the_postgres_backed_server_fails_fast_and_the_rerun_resumes(services, tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    """test_tracking_outage.py on these services: MLflow is killed (SIGKILL, a crash) after the first checkpoint;
    `start` brings back only MLflow (PostgreSQL and Prefect still answer), and the same command resumes."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    import tasks.tracking
    from flows.finetune import finetune
    from tests.unit.flows.test_finetune import tiny_config

    monkeypatch.setattr(tasks.tracking, "OUTAGE_BUDGET_S", 10.0)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = services.mlflow_url
    config = tiny_config(tmp_path, tiny_model_dir, uri, extra=[
        "train.max_steps=60", "train.epochs=50", "train.save_steps=4", "train.logging_steps=1",
        "eval.general_text_rows=4", "tracking.experiment=outage"])
    killed = {}

    def kill_after_first_checkpoint():
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if list((tmp_path / "runs").glob("runs/*/train/**/checkpoint-4")):
                os.killpg(services.pid("mlflow"), signal.SIGKILL)
                killed["at"] = time.monotonic()
                return
            time.sleep(0.1)

    with temporary_settings({PREFECT_API_URL: services.prefect_api, PREFECT_LOCAL_STORAGE_PATH: tmp_path / "store"}):
        watcher = threading.Thread(target=kill_after_first_checkpoint)
        watcher.start()
        with pytest.raises(Exception) as failure:
            finetune(config)
        failed_at = time.monotonic()
        watcher.join()
        assert "at" in killed, "training finished before the server was killed"
        assert failed_at - killed["at"] < 10.0 + 30
        assert f"MLflow tracking server {uri} has not answered" in str(failure.value)
        assert list((tmp_path / "runs").glob("runs/*/train/**/checkpoint-*"))

        back = {o.name: o.action for o in services.start()}
        assert back == {"PostgreSQL": "running", "MLflow": "started", "Prefect": "running"}
        (before,) = post(uri, "/api/2.0/mlflow/runs/search", {"experiment_ids": [get(
            uri, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="outage")["experiment"]["experiment_id"]]}
                         )["runs"]
        assert before["info"]["status"] == "RUNNING"
        result = finetune(config)
        # flush this process's events to the server while it runs: a later prefect_test_harness drains every
        # events worker, and one left pointing at a stopped server would hang it
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all()
    assert result["mlflow_run_id"] == before["info"]["run_id"]
    assert get(uri, "/api/2.0/mlflow/runs/get", run_id=result["mlflow_run_id"])["run"]["info"]["status"] == "FINISHED"
    steps = [m["step"] for m in get(uri, "/api/2.0/mlflow/metrics/get-history", run_id=result["mlflow_run_id"],
                                    metric_key="train/loss", max_results=1000)["metrics"]]
    assert steps.count(1) == 1 and max(steps) == 60
