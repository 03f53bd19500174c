"""`tuneforge ui`: the servers' command lines, and every process of both stopped with the command."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.ui import MLFLOW_ENV, commands

ROOT = Path(__file__).resolve().parents[3]


def test_mlflow_runs_one_worker_with_job_execution_off():
    servers = commands("sqlite:////w/runs/mlflow.db", bin_dir=Path("/v/bin"))
    assert servers["MLflow"] == ["/v/bin/mlflow", "ui", "--backend-store-uri", "sqlite:////w/runs/mlflow.db",
                                 "--host", "127.0.0.1", "--port", "5000", "--workers", "1"]
    assert servers["Prefect"] == ["/v/bin/prefect", "server", "start", "--host", "127.0.0.1", "--port", "4200"]
    assert MLFLOW_ENV == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def test_an_http_tracking_server_is_its_own_ui():
    assert list(commands("http://mlflow.internal:5000", bin_dir=Path("/v/bin"))) == ["Prefect"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its parent is dead too
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_the_command_stops_every_process_of_every_server(tmp_path, stop_signal):
    """Each fake server forks a worker that ignores SIGTERM, like a uvicorn worker mid-request: the grace period
    passes and the whole group is killed."""
    server = ("import os, signal, subprocess, sys, time\n"
              "w = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\n"
              "open(sys.argv[1], 'w').write(f'{os.getpid()} {w.pid}')\n"
              "time.sleep(120)\n")
    pids = [tmp_path / "a.pid", tmp_path / "b.pid"]
    servers = {name: [sys.executable, "-c", server, str(pid_file)] for name, pid_file in zip("AB", pids)}
    code = ("import sys\nfrom pathlib import Path\nfrom flows.ui import supervise\n"
            f"sys.exit(supervise({servers!r}, Path({str(tmp_path / 'logs')!r}), grace_s=2))")
    ui = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not all(p.exists() and p.read_text() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    started = [int(pid) for p in pids for pid in p.read_text().split()]
    assert len(started) == 4 and all(_alive(pid) for pid in started)
    ui.send_signal(stop_signal)
    assert ui.wait(timeout=30) == 0
    time.sleep(0.5)
    assert not any(_alive(pid) for pid in started)
