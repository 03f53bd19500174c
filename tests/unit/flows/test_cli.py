"""The `tuneforge` command: config errors before any heavy import, expected errors without a traceback, the
resolved config and the key listing."""
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from flows.cli import flow_name, guarded, main
from tasks.config import PipelineConfig, load_config
from tasks.data.errors import DataError

ROOT = Path(__file__).resolve().parents[3]
DEFAULT = "conf/smollm2/lora.yaml"


def test_the_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["tuneforge"] == "flows.cli:main"


def test_a_config_typo_is_reported_before_any_flow_is_imported():
    """What made a typo cost 11-13 s: torch, Prefect and MLflow imported before the config was read."""
    code = ("import sys\nfrom flows.cli import main\n"
            f"rc = main(['run', {DEFAULT!r}, 'train.max_stepz=3'])\n"
            "heavy = ['torch', 'prefect', 'mlflow', 'transformers', 'datasets', 'lm_eval']\n"
            "print(rc, sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "2 []"
    assert out.stderr == (f"{DEFAULT}: invalid config\n"
                          "  train.max_stepz: unknown key (did you mean train.max_steps?)\n")


def test_missing_data_fails_with_the_message_and_no_traceback(tmp_path):
    """Data preparation fails on the first source: the exit code is non-zero, the message names the file, and
    neither the command nor Prefect's failure logs print a traceback. With no PREFECT_HOME or MLFLOW_TRACKING_URI
    set, run_root alone decides where the run's Prefect state and MLflow store go."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    missing = tmp_path / "missing.jsonl"
    out = subprocess.run([sys.executable, "-m", "flows", DEFAULT, f"run_root={tmp_path / 'runs'}",
                          f"data.sources=[{{name: gone, path: {missing}, license: MIT}}]"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 1
    assert f"error: source 'gone': {missing} does not exist" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert out.stdout.splitlines()[0] == f"finetune  {DEFAULT}  sft / lora"  # then a banner per finished stage
    assert out.stdout.splitlines()[1].startswith("resolve_model")
    assert (tmp_path / "runs" / "mlflow.db").is_file() and (tmp_path / "runs" / "prefect").is_dir()


def test_a_tracking_server_that_is_not_there_ends_the_command_at_once_naming_it(tmp_path):
    import time

    from tests.helpers import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PREFECT_HOME": str(tmp_path / "prefect")}
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "flows", DEFAULT, f"run_root={tmp_path / 'runs'}"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert time.monotonic() - start < 5  # checked before the heavy imports: under a second here
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"error: MLflow tracking server {uri} is not reachable (ConnectionError); "
                                       "start it, or point MLFLOW_TRACKING_URI / tracking.tracking_uri at one that "
                                       "is up"]


def test_an_expected_error_prints_its_message_only(capsys):
    def fail():
        raise RuntimeError("stage failed") from DataError("data/x.jsonl:3: malformed JSON (Expecting value, column 1)")

    assert guarded(fail) == 1
    assert capsys.readouterr().err == "error: data/x.jsonl:3: malformed JSON (Expecting value, column 1)\n"


def test_debug_keeps_the_traceback(capsys):
    def fail():
        raise DataError("source 'gone': missing.jsonl does not exist")

    assert guarded(fail, debug=True) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("error: source 'gone': missing.jsonl does not exist\n")


def test_an_unexpected_error_keeps_its_traceback():
    def fail():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        guarded(fail)


def test_config_prints_the_resolved_config_as_yaml(capsys):
    assert main(["config", DEFAULT, "train.max_steps=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["max_steps"] == 3
    assert PipelineConfig.model_validate(printed) == load_config(DEFAULT, ["train.max_steps=3"])


def test_keys_lists_dotted_keys_with_type_default_and_description(capsys):
    assert main(["keys", "model."]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'model.name_or_path  str = "embedded:smollm2-135m-instruct"'
    assert out[1].startswith("    HF hub id, local folder")
    assert 'model.dtype  "float32" | "bfloat16" | "float16" = "float32"' in out


def test_keys_with_an_unknown_prefix_is_an_error(capsys):
    assert main(["keys", "trian."]) == 2
    assert "no config key starts with 'trian.'" in capsys.readouterr().err


@pytest.mark.parametrize("path, flow", [(DEFAULT, "finetune"), ("conf/smollm2/sft_then_sft.yaml", "chain"),
                                        ("conf/smollm2/merge_ties.yaml", "merge"),
                                        ("conf/smollm2/best_of_n.yaml", "best_of_n")])
def test_the_config_picks_the_flow(path, flow):
    assert flow_name(load_config(ROOT / path)) == flow


def test_a_failed_drift_gate_prints_its_reason_without_prefects_traceback(tmp_path):
    """The gate fails in the flow body (after the stages): Prefect logs the failure with a traceback on its
    console handler, which the command hides; the reason is printed once and the exit code is 1."""
    code = ("import sys\nfrom flows import terminal\nterminal.prefect_logging()  # as `tuneforge run`: before Prefect\n"
            "from prefect import flow\nfrom flows.cli import guarded, run_flow\n"
            "from flows.run import DriftGateFailed\n"
            "@flow(name='gate')\n"
            "def gate(config):\n"
            "    raise DriftGateFailed('drift gate failed: mmlu_cloze dropped 0.080 (limit 0.050)', concluded=True)\n"
            "from tasks.config import load_config\n"
            f"config = load_config({str(DEFAULT)!r}, ['run_root={tmp_path / 'runs'}'])\n"
            "sys.exit(guarded(lambda: run_flow(config, flow=gate)))")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 1
    assert out.stderr == "error: drift gate failed: mmlu_cloze dropped 0.080 (limit 0.050)\n"
    assert "Traceback" not in out.stdout + out.stderr
