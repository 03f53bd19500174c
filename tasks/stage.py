"""What every Prefect stage task shares: the cache policy, the transient-failure rule, the run handle.

Stages cache on their inputs and source, plus whether the input paths they were given still exist (the
stage's own `out_dir` is left out: it exists only after the first run). A re-run after a failure skips
finished stages; `run_stage` re-runs a stage whose cached result points at files that were deleted.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from pydantic import BaseModel

from tasks.tracking import RunLogger


class RunRef(BaseModel):
    """Small, serialisable pointer to the pipeline's MLflow run (tasks pass this, never clients)."""

    run_id: str
    tracking_uri: str

    def logger(self) -> RunLogger:
        return RunLogger(self.run_id, self.tracking_uri)


def _paths(value, found: list[Path]) -> None:
    if isinstance(value, Path):
        found.append(value)
    elif isinstance(value, BaseModel):
        _paths(dict(value), found)
    elif isinstance(value, dict):
        for v in value.values():
            _paths(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _paths(v, found)


def _paths_exist(context, inputs: dict) -> str:
    found: list[Path] = []
    _paths({k: v for k, v in inputs.items() if k != "out_dir"}, found)
    flags = sorted(f"{p}={p.exists()}" for p in found)
    return hashlib.sha256("|".join(flags).encode()).hexdigest()


STAGE_CACHE = INPUTS + TASK_SOURCE + CachePolicy.from_cache_key_fn(_paths_exist)


def run_stage(stage, *args, **kwargs):
    """Call a stage task; if its (possibly cached) result names files that no longer exist, recompute it.

    The stage's wall time goes to the run as `time/<stage>_s` (near zero when it came from the cache).
    """
    start = time.perf_counter()
    result = stage(*args, **kwargs)
    found: list[Path] = []
    _paths(result, found)
    if any(not p.exists() for p in found):
        result = stage.with_options(refresh_cache=True)(*args, **kwargs)
    run = next(a for a in (*args, *kwargs.values()) if isinstance(a, RunRef))
    run.logger().log_metrics({f"time/{stage.name}_s": time.perf_counter() - start})
    return result

def _transient_types() -> tuple[type[BaseException], ...]:
    from requests.exceptions import ConnectionError as RequestsConnectionError, Timeout

    return ConnectionError, TimeoutError, RequestsConnectionError, Timeout


def transient_only(task, task_run, state) -> bool:
    """Retry network and tracking-server hiccups; never a bad config, bad data or out-of-memory.

    MLflow raises an MlflowException whose context is requests' ConnectionError (not the builtin one), itself over
    urllib3's errors: the whole cause chain is searched."""
    try:
        state.result()
    except Exception as err:
        transient, seen = _transient_types(), 0
        while err is not None and seen < 16:
            if isinstance(err, transient):
                return True
            err, seen = err.__cause__ or err.__context__, seen + 1
    return False
