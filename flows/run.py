"""One MLflow run per flow run: open (or resume) it, record the outcome, fail it with the reason."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect import get_run_logger
from prefect.runtime import flow_run

from tasks.stage import RunRef
from tasks.tracking import RunLogger, tracking_uri


class DriftGateFailed(RuntimeError):
    def __init__(self, reason: str, concluded: bool = False):
        super().__init__(reason)
        self.concluded = concluded  # the run that raised it already ended itself with the gate's reasons


@contextmanager
def tracked_run(config, parent: RunRef | None = None) -> Iterator[tuple[RunRef, Path]]:
    """Yield (run handle, run folder) for a PipelineConfig or ChainConfig; nested under `parent` when given.
    An exception ends the MLflow run FAILED with its message."""
    uri = tracking_uri(config.tracking.tracking_uri, config.run_root)
    logger, resumed = RunLogger.start_or_resume(uri, config.tracking.experiment, config.run_name, config.digest(),
                                                artifact_root=config.run_root / "mlartifacts",
                                                parent_run_id=parent.run_id if parent else None)
    run_dir = (config.run_root / "runs" / logger.run_id).resolve()
    logger.log_params(config.flat())
    logger.set_tags({"prefect.flow_run_id": flow_run.get_id() or "", "run_dir": str(run_dir)})
    get_run_logger().info(f"MLflow run {logger.run_id} ({'resumed' if resumed else 'new'}), outputs under {run_dir}")
    try:
        yield RunRef(run_id=logger.run_id, tracking_uri=uri), run_dir
    except DriftGateFailed as err:
        if not err.concluded:
            logger.finish(False, reason=str(err))
        raise
    except BaseException as err:
        logger.finish(False, reason=f"{type(err).__name__}: {err}"[:5000])
        raise


def conclude(run: RunRef, run_dir: Path, evaluation, packaged, **summary) -> dict:
    """End the run: FINISHED when the drift gate passed, else FAILED with the gate's reasons (and raise)."""
    logger = run.logger()
    if not evaluation.verdict.passed:
        reason = "drift gate failed: " + "; ".join(evaluation.verdict.reasons)
        logger.finish(False, reason=reason)
        raise DriftGateFailed(reason, concluded=True)
    logger.finish(True)
    return {"mlflow_run_id": run.run_id, "run_dir": str(run_dir), "package": str(packaged.package_dir),
            "registered_version": packaged.version, "aliases": packaged.aliases, "eval": evaluation.tuned,
            "deltas": {r.metric: {"base": r.base_mean, "tuned": r.tuned_mean, "delta": r.delta, "ci_low": r.ci_low,
                                  "ci_high": r.ci_high} for r in evaluation.verdict.rows}, **summary}
