"""MLflow logging for one pipeline run, by explicit run id.

Tasks may run in Prefect worker threads, and MLflow's fluent API keeps the active run per thread, so every
call here goes through `MlflowClient` with the run id the flow created. No globals, safe across threads.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus
from mlflow.utils.time import get_current_time_millis

_MAX_PARAM_LEN = 6000


def tracking_uri(configured: str | None, run_root: Path) -> str:
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    run_root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(run_root / 'mlflow.db').resolve()}"


class RunLogger:
    """Thin handle on one MLflow run."""

    def __init__(self, run_id: str, uri: str):
        self.run_id, self.uri = run_id, uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @classmethod
    def start_or_resume(cls, uri: str, experiment: str, run_name: str, config_digest: str,
                        artifact_root: Path | None = None, parent_run_id: str | None = None) -> tuple["RunLogger", bool]:
        """Resume the newest unfinished run of this exact config, else start a new one.

        A re-run after a failure lands in the same MLflow run (and run folder), so Prefect's cached
        stages and the resumed training checkpoint line up with what that run already logged. A nested run
        (a chain's stage, under `parent_run_id`) is resumed even when it finished: the chain's re-run then
        finds every stage task of a finished stage in the cache and goes on to the next stage.
        """
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            location = artifact_root.resolve().as_uri() if artifact_root and uri.startswith("sqlite") else None
            exp_id = client.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
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
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

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

    def finish(self, ok: bool, reason: str | None = None) -> None:
        if reason:
            self.client.set_tag(self.run_id, "failure_reason", reason)
        status = RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED)
        self.client.set_terminated(self.run_id, status=status)
