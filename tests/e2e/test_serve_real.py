"""`make serve` the way a user runs it: a Prefect server on loopback, the deployment applied by `flows.serve`, and a
run triggered through the server to completion (the tiny model, small limits)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from mlflow import MlflowClient
from prefect.exceptions import ObjectNotFound

from tests.helpers import Server, free_port
from tests.unit.flows.test_finetune import tiny_config

pytestmark = pytest.mark.e2e


def test_the_served_deployment_applies_and_a_triggered_run_completes(tmp_path, tiny_model_dir, mlflow_uri):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, extra=["run_name=served-tiny"])
    conf = tmp_path / "served.yaml"
    conf.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    prefect = Server([str(Path_bin("prefect")), "server", "start", "--host", "127.0.0.1", "--port",
                      api.split(":")[-1].split("/")[0]], f"{api}/health", env=env, log=tmp_path / "prefect.log")
    with prefect:
        serve_log = tmp_path / "serve.log"
        served = subprocess.Popen([sys.executable, "-m", "flows.serve", str(conf)], env=env,
                                  stdout=open(serve_log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with temporary_settings({PREFECT_API_URL: api}):
                deadline = time.monotonic() + 120
                while True:  # the deployment is applied to the server (a 422 here ends flows.serve at once)
                    assert served.poll() is None, serve_log.read_text()[-3000:]
                    try:
                        with get_client(sync_client=True) as client:
                            client.read_deployment_by_name("finetune/served-tiny-scheduled")
                        break
                    except ObjectNotFound:
                        pass
                    assert time.monotonic() < deadline, "the deployment never appeared"
                    time.sleep(1)
                flow_run = run_deployment("finetune/served-tiny-scheduled", timeout=900)
            assert flow_run.state.is_completed(), (flow_run.state, serve_log.read_text()[-3000:])
        finally:
            os.killpg(served.pid, signal.SIGTERM)
            served.wait(timeout=30)

    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tuneforge").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["prefect.flow_run_id"] == str(flow_run.id)


def Path_bin(name):
    from pathlib import Path

    return Path(sys.executable).with_name(name)
