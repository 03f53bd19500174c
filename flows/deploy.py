"""Deployments on a work pool (`prefect.yaml`, `make deploy`, `make worker`): the config's flow, run by a worker.

    make worker     # a process worker for the local pool `tuneforge-local` (created if missing)
    make deploy     # prefect deploy --all: every deployment in prefect.yaml, with the cron of its conf file

Why a conf *path* is the parameter: `make serve` bakes the resolved config into the deployment, which suits one
process that serves what it loaded. A work-pool deployment outlives the command that made it and runs on whichever
worker picks it up, so it names the conf file (`config: conf/smollm2/lora.yaml`, plus `overrides`) and `run_conf`
loads it on the worker, from the code the pull step points at. Editing the conf file changes the next run, with
no redeploy; the Prefect UI's form shows the file and its overrides.

Why the cron cannot drift from conf: each deployment in `prefect.yaml` has one build step, `conf_schedule`, that
reads the conf file's `schedule:` section when `prefect deploy` runs; its outputs fill the deployment's
`schedules` and `parameters` through Prefect's `{{ step-id.key }}` templating. The file holds no cron of its own;
a changed cron takes effect at the next `make deploy` (tests/unit/flows/test_prefect_yaml.py checks the rest: each
deployment's name is its conf file's run_name).

The pull step is `set_working_directory: {{ $PWD }}`. Prefect fills `{{ $NAME }}` placeholders from the environment
when `prefect deploy` runs, so the deployment records the project root it was deployed from (the folder holding
prefect.yaml): the file stays the same in every checkout, and a worker on the same machine, started anywhere, runs
that checkout's code and reads its conf/ and data. A Docker or Kubernetes deployment names the image's project
folder instead (README, "Work pools").
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from prefect import flow

from flows import terminal
from flows.cli import ENV_DEFAULTS, describe, flow_for
from tasks.banner import announce
from tasks.config import load_config

POOL = "tuneforge-local"  # the process work pool of `make worker` and prefect.yaml


def conf_schedule(config: str) -> dict[str, str]:
    """prefect.yaml build step: the conf file's path, cron and timezone, for `{{ <step id>.cron }}` and friends.

    Runs in `prefect deploy`; a conf file that does not load stops the deploy with its message."""
    schedule = load_config(config).schedule
    return {"config": config, "cron": schedule.cron, "timezone": schedule.timezone}


@flow(name="tuneforge")
def run_conf(config: str, overrides: Sequence[str] = ()) -> dict:
    """Run the flow a conf file describes (finetune, or chain for `stages:`) as a subflow, on the worker.

    `config` is relative to the project root (the pull step's working directory); `overrides` are `key=value`
    strings as on the command line (`train.max_steps=10`)."""
    loaded = load_config(config, list(overrides))  # a bad file or key fails the run here, before any import
    for key, value in ENV_DEFAULTS.items():  # the same offline defaults as `tuneforge run`; the worker's env wins
        os.environ.setdefault(key, value)
    terminal.quiet_libraries()  # before the flow (and so torch, transformers) is imported: the worker's terminal
    from tasks.tracking_server import check_tracking_server, tracking_uri

    check_tracking_server(tracking_uri(loaded.tracking.tracking_uri, loaded.run_root))
    announce(f"{' '.join([config, *overrides])}  {describe(loaded)}")  # the worker's terminal and the Logs tab
    return flow_for(loaded)(loaded)


def check_server(url: str | None, timeout: float = 3.0) -> str | None:
    """None when a Prefect API answers at `url`, else the one line that says what to start."""
    import httpx

    if not url:
        return "PREFECT_API_URL is not set: start a server (make ui, :4200; make services, :4201) and set it"
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout).raise_for_status()
        return None
    except httpx.HTTPError as err:
        return (f"no Prefect server answers at PREFECT_API_URL={url} ({type(err).__name__}): start one "
                "(make ui serves :4200, make services :4201) or point PREFECT_API_URL at yours")


def prefect_deploy(args: list[str]) -> int:
    """`prefect --no-prompt deploy ARGS` (make deploy), with one fix to Prefect 3.8.8's client.

    After creating each deployment, `prefect deploy` asks the server for the pool's online workers with
    `"limit": null`; under FastAPI 0.154 (pinned: Prefect's server needs < 0.155) an explicit null no longer takes
    the body parameter's default, so the server answers 422 and `--all` stops after the first deployment. The
    request here carries the server's own defaults instead."""
    from prefect.client.orchestration import PrefectClient
    from prefect.settings import PREFECT_SERVER_API_DEFAULT_LIMIT

    unpatched = PrefectClient.read_workers_for_work_pool

    async def read_workers_for_work_pool(self, work_pool_name, worker_filter=None, offset=None, limit=None):
        return await unpatched(self, work_pool_name, worker_filter, offset=offset or 0,
                               limit=PREFECT_SERVER_API_DEFAULT_LIMIT.value() if limit is None else limit)

    PrefectClient.read_workers_for_work_pool = read_workers_for_work_pool
    os.environ["PWD"] = os.getcwd()  # prefect.yaml's {{ $PWD }}, as a shell sets it (a subprocess's cwd does not)
    from prefect.cli import app

    sys.argv = ["prefect", "--no-prompt", "deploy", *args]
    try:
        app()
    except SystemExit as done:  # cyclopts ends with sys.exit(code)
        return 0 if done.code is None else done.code if isinstance(done.code, int) else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.deploy check-server`: exit 1 with one line unless $PREFECT_API_URL answers.
    `python -m flows.deploy deploy [--all | --name NAME ...]`: prefect deploy from prefect.yaml (make deploy)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["deploy"]:
        return prefect_deploy(argv[1:])
    if argv != ["check-server"]:
        print("usage: python -m flows.deploy check-server | deploy [prefect deploy options]", file=sys.stderr)
        return 2
    problem = check_server(os.environ.get("PREFECT_API_URL"))
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
