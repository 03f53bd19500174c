"""One MLflow run per flow run: open (or resume) it, record the outcome, fail it with the reason."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect import get_run_logger
from prefect.runtime import flow_run

from tasks.stage import RunRef
from tasks.tracking import (RunLogger, TrackingUnavailable, bound_http_retries, check_tracking_server,
                            run_folder_lock, tracking_uri, ui_url)


class DriftGateFailed(RuntimeError):
    def __init__(self, reason: str, concluded: bool = False):
        super().__init__(reason)
        self.concluded = concluded  # the run that raised it already ended itself with the gate's reasons


MLFLOW_UI = "http://127.0.0.1:5000"
PREFECT_UI = "http://127.0.0.1:4200"


def run_links(uri: str, experiment_id: str, run_id: str, flow_run_id: str | None) -> dict[str, str]:
    """Deep links into the two UIs (`tuneforge ui` serves both on loopback; an HTTP tracking server is its own UI)."""
    from prefect.settings import PREFECT_UI_URL

    mlflow_ui = uri.rstrip("/") if uri.startswith(("http://", "https://")) else MLFLOW_UI
    links = {"mlflow": ui_url(experiment_id, run_id, base=mlflow_ui)}
    if flow_run_id:
        links["prefect"] = f"{(PREFECT_UI_URL.value() or PREFECT_UI).rstrip('/')}/runs/flow-run/{flow_run_id}"
    return links


def _link_tags(links: dict[str, str], flow_run_id: str | None) -> dict[str, str]:
    """The MLflow side of the link: the flow run as tags and as the run's description."""
    return {"prefect.flow_run_id": flow_run_id or "", "prefect.flow_run_url": links.get("prefect", ""),
            "mlflow.note.content": f"Prefect flow run: {links['prefect']}" if "prefect" in links else "",
            "links": json.dumps(links)}


def _name_prefect_run(run_name: str, run_id: str, links: dict[str, str], flow_run_id: str | None) -> None:
    """The Prefect side: the flow run named after the MLflow run, with a link artifact to it."""
    if not flow_run_id:
        return
    from prefect.artifacts import create_link_artifact
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run_id, name=f"{run_name}-{run_id[:8]}")
    create_link_artifact(links["mlflow"], link_text=f"MLflow run {run_name}", key="mlflow-run",
                         description="The MLflow run this flow run logs to")


@contextmanager
def tracked_run(config, parent: RunRef | None = None) -> Iterator[tuple[RunRef, Path]]:
    """Yield (run handle, run folder) for a PipelineConfig or ChainConfig; nested under `parent` when given.

    The tracking server is checked first (a clear one-line failure within seconds). The run folder is locked for
    the run's life, so the same config started twice at once is refused instead of sharing a run. An exception ends
    the MLflow run FAILED with its message; if the server is gone by then, the run stays RUNNING there and the
    original error is what the user sees (a re-run resumes the run).
    """
    uri = tracking_uri(config.tracking.tracking_uri, config.run_root)
    bound_http_retries()
    check_tracking_server(uri)
    logger, resumed = RunLogger.start_or_resume(uri, config.tracking.experiment, config.run_name, config.digest(),
                                                artifact_root=config.run_root / "mlartifacts",
                                                parent_run_id=parent.run_id if parent else None)
    run_dir = (config.run_root / "runs" / logger.run_id).resolve()
    with run_folder_lock(run_dir, logger.run_id):
        try:
            logger.log_params(config.flat())
            info = logger.client.get_run(logger.run_id).info
            links = run_links(uri, info.experiment_id, logger.run_id, flow_run.get_id())
            logger.set_tags({"run_dir": str(run_dir), **_link_tags(links, flow_run.get_id())})
            _name_prefect_run(info.run_name, logger.run_id, links, flow_run.get_id())
            get_run_logger().info(f"MLflow run {logger.run_id} ({'resumed' if resumed else 'new'}), outputs under "
                                  f"{run_dir}: {links['mlflow']}")
            with logger.system_metrics():  # CPU and memory for the whole run, in the run's System metrics tab
                yield RunRef(run_id=logger.run_id, tracking_uri=uri), run_dir
        except DriftGateFailed as err:
            if not err.concluded:
                _fail(logger, str(err))
            raise
        except BaseException as err:
            _fail(logger, f"{type(err).__name__}: {err}"[:5000])
            raise


def _fail(logger: RunLogger, reason: str) -> None:
    """Mark the run FAILED; never let a tracking outage hide the error that ended the run."""
    try:
        logger.finish(False, reason=reason)
    except TrackingUnavailable:
        get_run_logger().warning(f"could not mark MLflow run {logger.run_id} FAILED: tracking server {logger.uri} "
                                 "is unreachable; a re-run of the same command resumes it")


def conclude(run: RunRef, run_dir: Path, evaluation, packaged, **summary) -> dict:
    """End the run: FINISHED when the drift gate passed, else FAILED with the gate's reasons (and raise)."""
    logger = run.logger()
    if not evaluation.verdict.passed:
        reason = "drift gate failed: " + "; ".join(evaluation.verdict.reasons)
        logger.finish(False, reason=reason)
        raise DriftGateFailed(reason, concluded=True)
    logger.finish(True)
    return {"mlflow_run_id": run.run_id, "links": json.loads(logger.client.get_run(run.run_id).data.tags["links"]),
            "run_dir": str(run_dir),
            "report": str(packaged.report_path), "package": str(packaged.package_dir),
            "registered_version": packaged.version, "aliases": packaged.aliases, "base": evaluation.base,
            "eval": evaluation.tuned,
            "deltas": {r.metric: {"base": r.base_mean, "tuned": r.tuned_mean, "delta": r.delta, "ci_low": r.ci_low,
                                  "ci_high": r.ci_high, "n": r.n} for r in evaluation.verdict.rows}, **summary}
