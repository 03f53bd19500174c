"""Run a recipe in this process, or under `accelerate launch` across processes when `train.distributed` names an
accelerate config (conf/accelerate/: ddp, fsdp, deepspeed_zero2, deepspeed_zero3, or a path to one's own).

Parent side (`train_recipe`): writes the job (config, model, paths, run, seed) to `out_dir/launch/job.json`, starts
`accelerate launch ... -m tasks.training.launch job.json` in its own process group, streams its output to the
terminal and to `launch/launch.log`, and reads rank 0's `result.json`. A failed rank fails the stage with that
rank's own traceback (each rank writes `rank-N.error`); whatever happens, the process group is killed on the way
out, and every rank also dies with its launcher (PR_SET_PDEATHSIG), so no process is left behind.

Rank side (`main`): the same `train_<recipe>` function as a one-process run, so checkpoints and resume are the
trainer's own (the checkpoint folder is shared; rank 0 writes it). Only rank 0 logs to the MLflow run and saves
the adapter or model. The trainer's accelerator does the rest: DDP/FSDP wrapping, sharded data loading, loss
averaged across ranks for the logs.

Written here rather than left to the user's shell because the stage must stay one Prefect task with one result,
one MLflow run and one failure: `accelerate launch` alone gives neither the result nor the rank's error.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import yaml
from pydantic import BaseModel

from tasks.model import ModelRef
from tasks.training.config import TrainConfig

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "conf" / "accelerate"
CUDA_ONLY = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}  # accelerate turns these on for GPU-class backends only
_PR_SET_PDEATHSIG = 1


class DistributedTrainingFailed(RuntimeError):
    """A rank failed (its traceback is the message), or the launcher died before any rank reported."""


class Job(BaseModel):
    """Everything a rank needs to run the recipe, as JSON (no pickles cross the process boundary)."""

    cfg: TrainConfig
    model: ModelRef
    tokenizer_dir: Path
    train_path: Path
    out_dir: Path
    run_id: str | None = None
    tracking_uri: str | None = None
    seed: int = 0
    eval_path: Path | None = None


def accelerate_config(name: str) -> Path:
    """`train.distributed`'s file: a name under conf/accelerate/ or a path."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = ACCELERATE_CONFIGS / f"{name}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")))
        raise ValueError(f"train.distributed={name!r}: no accelerate config at {path}; use one of {shipped} or a "
                         "path to an accelerate config file (`accelerate config` writes one)")
    return path


def launch_command(cfg: TrainConfig, job_path: Path, port: int) -> list[str]:
    """`accelerate launch` for `cfg.distributed`; refuses FSDP/DeepSpeed without CUDA instead of letting accelerate
    fall back to plain DDP without a word."""
    import torch

    config_path = accelerate_config(cfg.distributed)
    kind = str(yaml.safe_load(config_path.read_text()).get("distributed_type", "")).upper()
    if kind in CUDA_ONLY and not torch.cuda.is_available():
        raise ValueError(f"train.distributed={cfg.distributed}: {CUDA_ONLY[kind]} needs CUDA GPUs (accelerate enables "
                         "it for GPU backends only; on CPU it would silently run as DDP); use train.distributed=ddp "
                         "on CPU")
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_path),
            *(["--num_processes", str(cfg.num_processes)] if cfg.num_processes else []),
            "--main_process_port", str(port), "-m", "tasks.training.launch", str(job_path)]


def train_recipe(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                 run=None, seed: int = 0, eval_path: Path | None = None, **recipe_kwargs):
    """The recipe's TrainResult: trained here, or across processes when `cfg.distributed` is set.
    `run` is the pipeline's RunRef (or None): its logger in this process, or rank 0's in a launched job.
    `recipe_kwargs` (callbacks, a teacher model, ...) reach an in-process recipe only: they are Python objects."""
    from tasks.training.recipes import trainer_for

    validation = {"eval_path": eval_path} if eval_path else {}
    if not cfg.distributed:
        return trainer_for(cfg.recipe)(cfg, model, tokenizer_dir, train_path, out_dir,
                                       logger=run.logger() if run else None, seed=seed, **validation, **recipe_kwargs)
    if recipe_kwargs:
        raise ValueError(f"train.distributed={cfg.distributed}: {', '.join(sorted(recipe_kwargs))} cannot be passed "
                         "to other processes; unset train.distributed to use them")
    return launch(Job(cfg=cfg, model=model, tokenizer_dir=tokenizer_dir, train_path=train_path, out_dir=out_dir,
                      run_id=run.run_id if run else None, tracking_uri=run.tracking_uri if run else None,
                      seed=seed, eval_path=eval_path))


def launch(job: Job):
    """Run `job` under `accelerate launch`; rank 0's TrainResult, or DistributedTrainingFailed with the failing
    rank's traceback."""
    from tasks.training.common import TrainResult, last_complete_checkpoint

    folder = Path(job.out_dir) / "launch"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (*folder.glob("rank-*.error"), folder / "result.json"):
        stale.unlink(missing_ok=True)
    last_complete_checkpoint(Path(job.out_dir) / "checkpoints")  # drop a half-written one before the ranks look
    job_path = folder / "job.json"
    job_path.write_text(job.model_dump_json(indent=1))
    cmd = launch_command(job.cfg, job_path, _free_port())
    log_path = folder / "launch.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, preexec_fn=_die_with_parent,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        tee = threading.Thread(target=_tee, args=(proc.stdout, log), daemon=True)
        tee.start()
        try:
            while proc.poll() is None:  # short waits: a Prefect timeout or Ctrl-C reaches this thread
                time.sleep(0.5)
        finally:
            _kill_group(proc)
            tee.join(timeout=10)
    result = folder / "result.json"
    if proc.returncode != 0 or not result.is_file():
        raise DistributedTrainingFailed(_failure(job, folder, proc.returncode, log_path))
    return TrainResult.model_validate_json(result.read_text())


def _failure(job: Job, folder: Path, returncode: int, log_path: Path) -> str:
    """The first rank's error (by time written), else the launcher's last lines."""
    errors = sorted(folder.glob("rank-*.error"), key=lambda p: p.stat().st_mtime)
    head = f"train.distributed={job.cfg.distributed}: "
    if errors:
        rank = errors[0].stem.split("-")[1]
        return head + f"rank {rank} failed (log: {log_path})\n{errors[0].read_text()[-4000:]}"
    tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
    return head + f"accelerate launch exited with {returncode} before any rank reported (log: {log_path})\n{tail}"


def _tee(stream, log) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        sys.stderr.write(line)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the launcher's process group (launcher and ranks), SIGKILL what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(proc.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(job_path: str) -> int:
    """One rank: run the recipe; rank 0 logs to the run and writes result.json; any rank's error to rank-N.error."""
    _die_with_parent()  # the launcher (torchrun's agent) going away takes this rank with it
    rank = int(os.environ.get("RANK", "0"))
    job = Job.model_validate_json(Path(job_path).read_text())
    folder = Path(job_path).parent
    try:
        from tasks.tracking import RunLogger
        from tasks.training.recipes import trainer_for

        logger = RunLogger(job.run_id, job.tracking_uri) if rank == 0 and job.run_id else None
        validation = {"eval_path": job.eval_path} if job.eval_path else {}
        result = trainer_for(job.cfg.recipe)(job.cfg, job.model, job.tokenizer_dir, job.train_path, job.out_dir,
                                             logger=logger, seed=job.seed, **validation)
    except BaseException:
        (folder / f"rank-{rank}.error").write_text(traceback.format_exc())
        raise
    if rank == 0:
        tmp = folder / ".result.json.tmp"
        tmp.write_text(result.model_dump_json(indent=1))
        os.replace(tmp, folder / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
