"""A two-stage chain from one command on the tiny model: one parent MLflow run with a nested run per stage; a kill -9
during stage 2 followed by a re-run skips stage 1 and resumes stage 2 from its checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow import MlflowClient

from tasks.config import ModelConfig
from tasks.init_from import resolve_model
from tests.unit.flows.test_finetune import write_data

ROOT = Path(__file__).resolve().parents[3]
STAGE2_STEPS = 300


def write_chain(tmp_path: Path, tiny_model_dir: Path, uri: str) -> Path:
    chain = {
        "run_name": "tiny-chain", "run_root": str(tmp_path / "runs"), "tracking": {"tracking_uri": uri},
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"sources": [{"name": "a", "path": str(write_data(tmp_path / "a.jsonl")), "license": "MIT"}],
                 "decontamination": {"enabled": False}},
        "train": {"max_steps": 4, "save_steps": 2, "logging_steps": 1, "learning_rate": 0.01, "max_length": 64,
                  "lora": {"target_modules": "all-linear"}},
        "eval": {"benchmarks": {"enabled": False}, "sample_generations": 1, "max_new_tokens": 4,
                 "perplexity_max_rows": 4},
        "stages": [
            {"name": "first", "package": {"registered_model_name": "tiny-chain-first"}},
            {"name": "second", "model": {"init_from": "stage:first"},
             "train": {"max_steps": STAGE2_STEPS, "save_steps": 10, "logging_steps": 10, "epochs": 100},
             "package": {"registered_model_name": "tiny-chain-second"}},
        ],
    }
    path = tmp_path / "chain.yaml"
    path.write_text("# python -m flows chain.yaml\n" + yaml.safe_dump(chain))
    return path


def start(conf: Path, tmp_path: Path, log: Path) -> subprocess.Popen:
    """`python -m flows CONF` as `make pipeline` runs it, in its own process group (so kill -9 takes all of it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, "-m", "flows", str(conf), "eval.drift.max_drop={}"], cwd=ROOT, env=env,
                            stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


def stage2_checkpoints(runs: Path) -> list[Path]:
    """Complete checkpoints (trainer_state.json is written last) of the stage that starts from another stage's
    output (its run folder holds model/model)."""
    return [c for d in runs.glob("runs/*") if (d / "model" / "model").is_dir()
            for c in (d / "train" / "checkpoints").glob("checkpoint-*") if (c / "trainer_state.json").is_file()]


def test_chain_runs_nested_and_resumes_after_kill_9(tmp_path, tiny_model_dir, mlflow_uri):
    conf, log = write_chain(tmp_path, tiny_model_dir, mlflow_uri), tmp_path / "flow.log"
    proc = start(conf, tmp_path, log)
    deadline = time.monotonic() + 300
    while not stage2_checkpoints(tmp_path / "runs"):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "stage 2 never wrote a checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (stage1_history,) = [p for p in (tmp_path / "runs").glob("runs/*/train/history.json")]
    stage1_written = stage1_history.stat().st_mtime_ns
    killed_at = max(int(c.name.split("-")[1]) for c in stage2_checkpoints(tmp_path / "runs"))  # the last complete
    assert killed_at < STAGE2_STEPS

    rerun = start(conf, tmp_path, log)
    assert rerun.wait(timeout=600) == 0, log.read_text()[-3000:]

    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("tuneforge").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["mlflow.runName"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"tiny-chain-first", "tiny-chain-second"} and len(runs) == 3  # resumed, not re-created
    assert parent.info.status == "FINISHED" and parent.data.tags["gate"] == "passed"
    assert all(r.info.status == "FINISHED" for r in children.values())

    assert stage1_history.stat().st_mtime_ns == stage1_written  # stage 1 was not trained again
    second = children["tiny-chain-second"]
    assert f"checkpoint-{killed_at}" in second.data.tags["resumed_from"]
    history = json.loads(Path(second.data.tags["run_dir"], "train", "history.json").read_text())
    assert max(h["step"] for h in history if "loss" in h) == STAGE2_STEPS
    first_package = Path(children["tiny-chain-first"].data.tags["run_dir"], "package", "adapter")
    assert second.data.tags["init_from"] == second.data.params["model.init_from"] == str(first_package)

    # stage 1's registered model starts a new run as well: models:/<name>@champion
    ref = resolve_model(ModelConfig(init_from="models:/tiny-chain-first@champion"), tmp_path / "again", mlflow_uri)
    assert (Path(ref.path) / "model.safetensors").is_file()
