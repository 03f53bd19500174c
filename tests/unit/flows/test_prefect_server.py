"""The pipeline's Prefect server ends with the pipeline, even when the pipeline is killed with SIGKILL."""
import os
import signal
import subprocess
import sys
import time

import psutil

SCRIPT = """
from flows.prefect_server import prefect_api
from prefect.settings import PREFECT_API_URL
with prefect_api() as url:
    assert PREFECT_API_URL.value() == url
    print(url, flush=True)
    import time; time.sleep(120)
"""


def test_the_server_dies_with_a_killed_pipeline(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path)}
    pipeline = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True, env=env)
    url = pipeline.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:")
    children = psutil.Process(pipeline.pid).children(recursive=True)
    assert children and any("uvicorn" in " ".join(c.cmdline()) for c in children)

    pipeline.send_signal(signal.SIGKILL)
    pipeline.wait()
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, [c.cmdline() for c in alive]
    import httpx

    time.sleep(0.5)
    try:
        httpx.get(f"{url}/health", timeout=2)
        raise AssertionError("the server still answers after its pipeline was killed")
    except httpx.HTTPError:
        pass
