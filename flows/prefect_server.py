"""A Prefect API server for one pipeline process, tied to that process's life.

Prefect's own temporary server (what runs when PREFECT_API_URL is unset) is a uvicorn child that outlives a
pipeline killed with SIGKILL: it is re-parented to init and keeps its port and database. This one is started with
the kernel's parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`), so it ends with the process that started it,
however that process ends. With PREFECT_API_URL set (a shared server, `make ui`), nothing is started.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when the parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()  # and keep the terminal's Ctrl-C for the parent, which stops the server in order


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    """A private Prefect server, booting from construction (so the flow's heavy imports overlap its ~13 s start),
    used through `api()`, stopped on exit. Does nothing when PREFECT_API_URL names a server already."""

    def __init__(self, startup_timeout: float = 120.0):
        from prefect.settings import PREFECT_API_URL

        self.startup_timeout, self.process, self.url = startup_timeout, None, None
        if PREFECT_API_URL.value():
            return
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/api"
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app", "--host",
             "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            env=env, preexec_fn=_die_with_parent)

    def _wait(self) -> None:
        import httpx

        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited at start (code {self.process.returncode})")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not answer on {self.url} within "
                                   f"{self.startup_timeout:.0f} s")
            time.sleep(0.2)

    @contextmanager
    def api(self) -> Iterator[str | None]:
        """Wait until the server answers, and point Prefect at it; drain the run's logs and events at the end."""
        if self.process is None:
            yield None
            return
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

        self._wait()
        # links point at the UI that outlives this server: `tuneforge ui` on the same database
        with temporary_settings({PREFECT_API_URL: self.url, PREFECT_UI_URL: "http://127.0.0.1:4200"}):
            try:
                yield self.url
            finally:  # the run's last logs and events go out before the server does
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=10, at_exit=False)
                EventsWorker.drain_all(timeout=10, at_exit=False)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "PrefectServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def prefect_api(startup_timeout: float = 120.0) -> Iterator[str | None]:
    """Start a private server and yield its API URL once it answers (None when PREFECT_API_URL is set)."""
    with PrefectServer(startup_timeout) as server, server.api() as url:
        yield url
