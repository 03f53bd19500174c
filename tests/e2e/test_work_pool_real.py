"""`make deploy` + `make worker` the way a user runs them: a Prefect server on loopback, the process work pool, the
project's prefect.yaml deployed by `prefect deploy` (flows.deploy's wrapper, as make deploy runs it), a worker
subprocess, and a run triggered through the server with the tiny model and small limits. Asserts the run completed on
the worker, its MLflow run carries the Prefect flow run's id, and nothing this test started outlives it."""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow import MlflowClient

from flows.deploy import POOL
from tasks.config import load_config
from tests.helpers import Server, free_port
from tests.unit.flows.test_finetune import tiny_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEPLOYED = {"smollm2-lora": "conf/smollm2/lora.yaml", "smollm2-sft-dpo": "conf/smollm2/sft_dpo.yaml",
            "smollm2-sft-then-sft": "conf/smollm2/sft_then_sft.yaml", "smollm2-rlhf": "conf/smollm2/rlhf.yaml"}
MARK = "TUNEFORGE_WORK_POOL_TEST"  # in the environment of every process this test starts, and so of their children


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Processes whose environment carries this test's mark (the server, the worker, its flow-run processes)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARK) == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def run(cmd: list[str], env: dict, log: Path) -> None:
    with open(log, "a") as out:
        done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=180)
    assert done.returncode == 0, log.read_text()[-3000:]


def test_a_prefect_yaml_deployment_runs_on_a_process_worker(tmp_path, tiny_model_dir, mlflow_uri):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.objects import WorkPoolStatus
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, extra=["run_name=pooled-tiny"])
    conf = tmp_path / "pooled.yaml"
    conf.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    tag, port = uuid.uuid4().hex, free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, MARK: tag, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    log = tmp_path / "commands.log"
    with Server([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                f"{api}/health", env=env, log=tmp_path / "prefect.log"):
        run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"], env, log)
        deploying = time.monotonic()
        run([sys.executable, "-m", "flows.deploy", "deploy", "--all"], env, log)  # make deploy's command
        deploy_s = time.monotonic() - deploying
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            for name, path in DEPLOYED.items():
                deployment = client.read_deployment_by_name(f"tuneforge/{name}")
                wanted = load_config(ROOT / path).schedule
                (schedule,) = deployment.schedules  # the cron came from the conf file, through the build step
                assert (schedule.schedule.cron, schedule.schedule.timezone) == (wanted.cron, wanted.timezone)
                assert deployment.parameters == {"config": path, "overrides": []}
                assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                                  {"directory": str(ROOT)}}]  # {{ $PWD }} at deploy time
                # the nightly schedules off, so the server cannot start a real run if the test runs near 03:00
                client.update_deployment_schedule(deployment.id, schedule.id, active=False)

            started = time.monotonic()
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1"],
                env=env, cwd=tmp_path, stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT,
                start_new_session=True)  # started outside the project: the deployment's pull step finds the code
            try:
                while client.read_work_pool(POOL).status != WorkPoolStatus.READY:  # the worker's first heartbeat
                    assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                    assert time.monotonic() - started < 120, "the worker never came online"
                    time.sleep(0.5)
                worker_up_s = time.monotonic() - started
                triggered = time.monotonic()
                flow_run = run_deployment("tuneforge/smollm2-lora", timeout=600,
                                          parameters={"config": str(conf), "overrides": ["train.max_steps=4"]})
                run_s = time.monotonic() - triggered
                print(f"prefect deploy --all {deploy_s:.1f} s; worker online in {worker_up_s:.1f} s; "
                      f"run_deployment to {flow_run.state.name} in {run_s:.1f} s")
                assert flow_run.state.is_completed(), (flow_run.state, (tmp_path / "worker.log").read_text()[-3000:])
                assert flow_run.work_pool_name == POOL
                (child,) = client.read_flow_runs(  # the finetune subflow, the MLflow run's Prefect side
                    flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id])),
                    sort=FlowRunSort.START_TIME_ASC, limit=10)  # every body field given: FastAPI 0.154 refuses nulls
            finally:
                stopping = time.monotonic()
                os.killpg(worker.pid, signal.SIGTERM)  # the worker's graceful path (SIGINT to itself), server still up
                worker.wait(timeout=60)
                print(f"worker stopped {time.monotonic() - stopping:.1f} s after SIGTERM")
        assert worker.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), worker.returncode
    assert not tagged_processes(tag), [p.cmdline() for p in tagged_processes(tag)]

    client = MlflowClient(mlflow_uri)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("tuneforge").experiment_id])
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.data.params["train.max_steps"] == "4"  # the override won
    assert mlflow_run.data.tags["prefect.flow_run_id"] == str(child.id)
    assert child.state.is_completed() and child.flow_id != flow_run.flow_id  # finetune, under the tuneforge flow
