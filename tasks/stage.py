"""What every Prefect stage task shares: the cache policy, the transient-failure rule, the run handle.

Stages cache on their inputs and source, plus whether the input paths they were given still exist (the
stage's own `out_dir` is left out: it exists only after the first run). A re-run after a failure skips
finished stages; `run_stage` re-runs a stage whose cached result points at files that were deleted.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import time
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.serializers import Serializer
from pydantic import BaseModel, Field

from tasks.tracking import RunLogger, is_transient


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

    The stage's wall time goes to the run as `time/<stage>_s` (near zero when it came from the cache), and its
    banner (name, time, the result's one-line summary) to the terminal and the flow run's log.
    """
    from tasks.banner import announce, banner

    start = time.perf_counter()
    state = stage(*args, return_state=True, **kwargs)
    result = state.result()  # a failed stage raises its own exception here
    found: list[Path] = []
    _paths(result, found)
    if any(not p.exists() for p in found):
        state = stage.with_options(refresh_cache=True)(*args, return_state=True, **kwargs)
        result = state.result()
    seconds = time.perf_counter() - start
    run = next(a for a in (*args, *kwargs.values()) if isinstance(a, RunRef))
    run.logger().log_metrics({f"time/{stage.name}_s": seconds})
    announce(banner(stage.name, seconds, result, cached=state.name == "Cached"))
    return result


def transient_only(task, task_run, state) -> bool:
    """Retry network and tracking-server hiccups; never a bad config, bad data or out-of-memory."""
    try:
        state.result()
    except Exception as err:
        return is_transient(err)
    return False


_TRUSTED = ("tasks.", "evals.", "flows.")


class StageResultSerializer(Serializer):
    """Persist stage results as JSON: `{"model": "tasks.x.Result", "data": {...}}`, never pickle.

    Prefect's default serializer is cloudpickle, and a cache hit unpickles whatever lies in its storage folder:
    anyone who could write there could run code on the next run. Here a read can only build a pydantic model of
    this project's own classes (or plain JSON), validated field by field."""

    type: str = Field(default="tuneforge-stage-json", frozen=True)

    def dumps(self, obj) -> bytes:
        if isinstance(obj, BaseModel):
            cls = type(obj)
            return json.dumps({"model": f"{cls.__module__}.{cls.__qualname__}",
                               "data": obj.model_dump(mode="json")}).encode()
        if isinstance(obj, BaseException):  # a failed stage's error, kept for the UI, never a cache hit
            return json.dumps({"error": f"{type(obj).__name__}: {obj}"}).encode()
        return json.dumps({"model": None, "data": obj}).encode()

    def loads(self, blob: bytes):
        record = json.loads(blob)
        if "error" in record:
            return RuntimeError(record["error"])
        name = record.get("model")
        if name is None:
            return record["data"]
        module, _, qualname = name.rpartition(".")
        if not name.startswith(_TRUSTED):
            raise ValueError(f"refusing to load a cached stage result of type {name!r}: not a tuneforge class")
        cls = getattr(importlib.import_module(module), qualname, None)
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise ValueError(f"refusing to load a cached stage result of type {name!r}: not a pydantic model")
        return cls.model_validate(record["data"])


STAGE_RESULTS = StageResultSerializer()
