"""`tuneforge ui`: the MLflow UI on 127.0.0.1:5000 and the Prefect UI on 127.0.0.1:4200, until Ctrl-C or SIGTERM.

MLflow 3's server starts 4 uvicorn workers, a job runner and a huey consumer per job type by default: 15 processes,
about 3 GB resident. This project runs no MLflow server jobs (they are for GenAI judges and prompt optimisation),
so the UI runs one worker with job execution off: 2 processes, about 0.5 GB.

Each server runs in a process group of its own, stopped as a whole (SIGTERM, then SIGKILL after a grace period),
so no worker outlives the command; their output goes to log files, not the terminal.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
MLFLOW_PORT = 5000
PREFECT_PORT = 4200

# One worker and no job execution: the UI for one person's runs, not a shared server.
MLFLOW_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def commands(uri: str, bin_dir: Path = Path(sys.executable).parent) -> dict[str, list[str]]:
    """Name -> command line of each server. An HTTP tracking URI is a server with its own UI: not started here."""
    servers = {"Prefect": [str(bin_dir / "prefect"), "server", "start", "--host", HOST, "--port", str(PREFECT_PORT)]}
    if not uri.startswith(("http://", "https://")):
        servers["MLflow"] = [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", uri, "--host", HOST,
                             "--port", str(MLFLOW_PORT), "--workers", "1"]
    return servers


class _Stop(Exception):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


def _raise_stop(signum, frame):
    raise _Stop


def supervise(servers: dict[str, list[str]], log_dir: Path, env: dict[str, str] | None = None,
              grace_s: float = 10.0) -> int:
    """Run every server until Ctrl-C, SIGTERM or one of them exits; then stop them all. Returns the exit code: 0 when
    stopped by a signal, the first server's code when it exited by itself."""
    log_dir.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, cmd in servers.items():
            with open(log_dir / f"{name.lower()}.log", "ab") as log:
                procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                               env={**os.environ, **(env or {})})
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"{name} server exited with code {proc.returncode}; its log: {log_dir / name.lower()}.log",
                          file=sys.stderr)
                    return proc.returncode or 1
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
        stop(procs.values(), grace_s)
        signal.signal(signal.SIGTERM, previous)


def stop(procs, grace_s: float) -> None:
    """SIGTERM each process group, then SIGKILL the groups still alive after `grace_s`."""
    groups = [p.pid for p in procs]  # start_new_session: the group id is the leader's pid
    for group in groups:
        _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    while time.monotonic() < deadline and any(_group_alive(g) for g in groups):  # workers may outlive the leader
        time.sleep(0.2)
    for group in groups:
        _signal_group(group, signal.SIGKILL)
    for proc in procs:
        proc.wait()


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def main(run_root: Path = Path("runs")) -> int:
    from tasks.tracking_server import tracking_uri

    uri = tracking_uri(None, run_root)  # what runs track to when no config names a store
    servers = commands(uri)
    mlflow_ui = f"http://{HOST}:{MLFLOW_PORT}" if "MLflow" in servers else uri
    log_dir = run_root / "ui"
    print(f"MLflow UI   {mlflow_ui}\nPrefect UI  http://{HOST}:{PREFECT_PORT}\n"
          f"logs in {log_dir}/; Ctrl-C stops both", flush=True)
    return supervise(servers, log_dir, env=MLFLOW_ENV)
