"""MLflow logging for one pipeline run, by explicit run id, with a bounded budget for tracking-server outages.

Tasks may run in Prefect worker threads, and MLflow's fluent API keeps the active run per thread, so every
call here goes through `MlflowClient` with the run id the flow created. Safe across threads.

Outages: MLflow's own HTTP retries (7 tries, exponential backoff, ~4 minutes per call) are cut to one quick retry,
and `RunLogger` retries a failing call itself until `OUTAGE_BUDGET_S` have passed since the server stopped
answering. That budget is per outage and per tracking URI, not per call: once spent, every later call (the
training callback's next log, `finish(False)`) tries once and fails fast, until a call succeeds again.
"""
from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.utils.time import get_current_time_millis

from tasks.tracking_server import TrackingUnavailable, check_tracking_server, is_transient, tracking_uri  # noqa: F401

_MAX_PARAM_LEN = 6000
OUTAGE_BUDGET_S = 60.0
SYSTEM_METRICS_INTERVAL_S = 5.0  # seconds between system metric samples (MLflow's default: 10)


def bound_http_retries() -> None:
    """One quick retry per MLflow HTTP call, 10 s timeout (explicit environment settings win). The outage budget
    in `RunLogger` does the waiting; MLflow's defaults would retry each call for minutes."""
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                        ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")):
        os.environ.setdefault(name, value)


class _Outages:
    """When each tracking URI stopped answering. Process-wide on purpose: the budget belongs to the server, and
    every RunLogger of the process (one per stage, per thread) must spend the same one."""

    lock = threading.Lock()
    since: dict[str, float] = {}
    spent: set[str] = set()

    @classmethod
    def failed(cls, uri: str) -> tuple[float, bool]:
        """Seconds since this outage began, and whether its budget is spent."""
        with cls.lock:
            start = cls.since.setdefault(uri, time.monotonic())
            waited = time.monotonic() - start
            if waited >= OUTAGE_BUDGET_S:
                cls.spent.add(uri)
            return waited, uri in cls.spent

    @classmethod
    def answered(cls, uri: str) -> None:
        with cls.lock:
            cls.since.pop(uri, None)
            cls.spent.discard(uri)


class RunFolderBusy(RuntimeError):
    """Another live process is running this same run."""


@contextmanager
def run_folder_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """Hold an exclusive lock on the run folder for the run's lifetime. The kernel drops it when the process dies
    (even kill -9), so a crashed run can be resumed, but a second live process of the same config is refused
    instead of sharing one MLflow run and one checkpoint folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / ".lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderBusy(f"run {run_id} of this config is already running ({holder}); wait for it to end, "
                                "or change run_name to start a separate run") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def _call(uri: str, fn, *args, **kwargs):
    """Call `fn`; on a network error retry (1, 2, 4, 8, 10 s ...) while this outage's budget lasts."""
    delay = 1.0
    while True:
        try:
            out = fn(*args, **kwargs)
        except Exception as err:
            if not is_transient(err):
                raise
            waited, spent = _Outages.failed(uri)
            if spent:
                raise TrackingUnavailable(
                    f"MLflow tracking server {uri} has not answered for {waited:.0f} s; giving up. Checkpoints are "
                    "kept: run the same command again once the server is back to resume this run") from err
            time.sleep(max(0.0, min(delay, OUTAGE_BUDGET_S - waited)))
            delay = min(2 * delay, 10.0)
            continue
        _Outages.answered(uri)
        return out


class GuardedClient:
    """An MlflowClient whose every call spends the shared outage budget instead of MLflow's per-call retries."""

    def __init__(self, uri: str):
        self._uri, self._client = uri, MlflowClient(tracking_uri=uri, registry_uri=uri)

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: _call(self._uri, attr, *args, **kwargs)


class RunLogger:
    """Thin handle on one MLflow run."""

    def __init__(self, run_id: str, uri: str):
        self.run_id, self.uri = run_id, uri
        self.client = GuardedClient(uri)

    @classmethod
    def start_or_resume(cls, uri: str, experiment: str, run_name: str, config_digest: str,
                        artifact_root: Path | None = None, parent_run_id: str | None = None) -> tuple["RunLogger", bool]:
        """Resume the newest unfinished run of this exact config, else start a new one.

        A re-run after a failure lands in the same MLflow run (and run folder), so Prefect's cached
        stages and the resumed training checkpoint line up with what that run already logged. A nested run
        (a chain's stage, under `parent_run_id`) is resumed even when it finished: the chain's re-run then
        finds every stage task of a finished stage in the cache and goes on to the next stage.
        """
        client = GuardedClient(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            location = artifact_root.resolve().as_uri() if artifact_root and uri.startswith("sqlite") else None
            exp_id = client.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        mark_training_experiment(client, exp_id)
        query = f"tags.config_digest = '{config_digest}'"
        query += (f" and tags.`mlflow.parentRunId` = '{parent_run_id}'" if parent_run_id
                  else " and attributes.status != 'FINISHED'")
        found = client.search_runs([exp_id], query, order_by=["attributes.start_time DESC"], max_results=1)
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return cls(run_id, uri), True
        tags = {"config_digest": config_digest, **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}
        run = client.create_run(exp_id, run_name=run_name, tags=tags)
        return cls(run.info.run_id, uri), False

    def log_params(self, params: dict) -> None:
        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)[:_MAX_PARAM_LEN]) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        ts = get_current_time_millis()
        rows = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        for i in range(0, len(rows), 500):
            self.client.log_batch(self.run_id, metrics=rows[i:i + 500])

    def set_tags(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, local: Path, artifact_path: str | None = None) -> None:
        local = Path(local)
        if local.is_dir():
            self.client.log_artifacts(self.run_id, str(local), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(local), artifact_path)

    def log_dataset(self, path: Path, name: str, digest: str, context: str) -> None:
        """Record a data file as an MLflow dataset input (name, digest, source, schema)."""
        import pandas as pd

        df = pd.read_json(path, lines=True)
        dataset = mlflow.data.from_pandas(df, source=str(Path(path).resolve()), name=name, digest=digest[:36])
        entity = dataset._to_mlflow_entity()
        self.client.log_inputs(self.run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])])

    def log_table(self, rows: list[dict] | dict, artifact_file: str) -> None:
        """Rows as an MLflow table artifact (`artifact_file` ending .json): the same file and run tag as
        `MlflowClient.log_table` (JSON "split" + the `mlflow.loggedArtifacts` tag), so the runs page's table compare
        view lists and searches it and `load_table` reads it; but the file is replaced, not appended to (MLflow's
        appends), so a re-run after a failure does not double the rows."""
        import tempfile

        import pandas as pd

        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

        if not artifact_file.endswith(".json"):
            raise ValueError(f"log_table: {artifact_file!r} must end with .json")
        frame = pd.DataFrame(rows) if isinstance(rows, list) else pd.DataFrame.from_dict(rows)
        folder, name = os.path.split(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            frame.to_json(local, orient="split", index=False, date_format="iso")
            self.client.log_artifact(self.run_id, str(local), folder or None)
        logged = json.loads(self.client.get_run(self.run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
        entry = {"path": artifact_file, "type": "table"}
        if entry not in logged:
            self.client.set_tag(self.run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps(logged + [entry]))

    def start_system_metrics(self, interval_s: float = SYSTEM_METRICS_INTERVAL_S) -> None:
        """Sample CPU, memory, disk and network (and an NVIDIA GPU where pynvml is installed) every `interval_s`
        into this run's `system/*` metrics, the UI's System metrics tab, until `stop_system_metrics`.

        One MLflow `SystemMetricsMonitor` per run and process, shared: a second start (the whole run's, then the
        training stage's) only counts, and the monitor stops at the last stop. Steps go on from what the run
        already has (a resumed run appends). Never raises: the metrics are a nicety, not the run. The monitor's
        thread also ends by itself within `interval_s` once the run is no longer RUNNING (a failed stage that
        never reached its stop), and it is a daemon thread."""
        _SystemMetrics.start(self.run_id, self.uri, interval_s)

    def stop_system_metrics(self) -> None:
        """Release this caller's share of the run's monitor; the last one stops it and logs the partial sample
        since the last interval, so even a stage shorter than one interval leaves a point."""
        _SystemMetrics.stop(self.run_id)

    @contextmanager
    def system_metrics(self, interval_s: float = SYSTEM_METRICS_INTERVAL_S) -> Iterator[None]:
        """`with logger.system_metrics(): ...`: system metrics for the block, stopped however it ends."""
        self.start_system_metrics(interval_s)
        try:
            yield
        finally:
            self.stop_system_metrics()

    def finish(self, ok: bool, reason: str | None = None) -> None:
        if reason:
            self.client.set_tag(self.run_id, "failure_reason", reason)
        status = RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED)
        self.client.set_terminated(self.run_id, status=status)


# --- MLflow UI: this project's experiments are model training, not GenAI ---------------------------------------

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"  # the UI's other choice is "genai_development"
UI_WORKFLOW = "machine_learning"  # MLflow 3.17's UI switch: "genai" (its default) or "machine_learning"


def mark_training_experiment(client, exp_id: str) -> None:
    """Tag the experiment `mlflow.experimentKind=custom_model_development` (model training), unless a kind was
    chosen already (a value the UI inferred, ending `_inferred`, is replaced).

    Which pages MLflow's UI shows is decided in the browser. 3.17's bundle takes it from its workflow switch (the
    GenAI / Machine learning toggle in the sidebar, kept in localStorage `mlflow.workflowType`, GenAI by default)
    or from a `?workflowType=` query in the page URL, which wins; the tag is read by UI builds without that switch.
    So link runs with `ui_url`, which carries the query: then the experiment opens on Runs, not Traces, and a
    run's breadcrumb says Runs, not Evaluations."""
    current = client.get_experiment(exp_id).tags.get(EXPERIMENT_KIND_TAG, "")
    if not current or current == "no_inferred_type" or current.endswith("_inferred"):
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND)


def ui_url(experiment_id: str, run_id: str | None = None, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI page of an experiment or of one of its runs, opened as model training (see
    `mark_training_experiment`). `base`: where `mlflow ui` listens (`make ui`: 127.0.0.1:5000)."""
    page = f"experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/#/{page}?workflowType={UI_WORKFLOW}"


# --- System metrics -----------------------------------------------------------------------------------------------


class _SystemMetrics:
    """run id -> [MLflow SystemMetricsMonitor, holders]. Process-wide on purpose, like `_Outages`: the run's
    stages hold their own RunLogger, but the run has one monitor (two would log clashing steps)."""

    lock = threading.Lock()
    active: dict[str, list] = {}

    @classmethod
    def start(cls, run_id: str, uri: str, interval_s: float) -> None:
        with cls.lock:
            entry = cls.active.get(run_id)
            thread = getattr(entry[0], "_process", None) if entry else None
            if thread is not None and thread.is_alive():
                entry[1] += 1
                return
            try:
                import psutil
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                psutil.cpu_percent()  # its first reading is since the last call: make the first sample a real one
                monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True,
                                               tracking_uri=uri)
                monitor.start()
            except Exception as err:  # psutil missing, tracking store unreachable: train without them
                logging.getLogger("tuneforge").warning(f"system metrics off for run {run_id}: {err}")
                cls.active.pop(run_id, None)
                return
            cls.active[run_id] = [monitor, 1]  # a dead monitor's holders failed before their stop

    @classmethod
    def stop(cls, run_id: str) -> None:
        with cls.lock:
            entry = cls.active.get(run_id)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del cls.active[run_id]
        monitor = entry[0]
        try:
            monitor.finish()
            if any(m.metrics for m in monitor.monitors):  # the samples of the interval cut short
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
        except Exception as err:
            logging.getLogger("tuneforge").warning(f"system metrics of run {run_id}: last sample lost: {err}")
