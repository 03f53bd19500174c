"""Portable registered models: a package names its base by Hub id (not this machine's cache path) and still loads
here offline; the pyfunc carries its own code and pinned requirements, so it loads where tuneforge is not installed.

The embedded model is played by the tiny random Llama: `TUNEFORGE_CACHE` points at a cache whose converted
`smollm2-135m-instruct` folder is a copy of it, so "the local copy of HuggingFaceTB/SmolLM2-135M-Instruct" loads in
seconds and a wrong mapping (the real 135M model, or a Hub download) fails loudly.
"""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import torch
import yaml

from evals.drift import GateVerdict
from tasks.config import ModelConfig, load_config
from tasks.evaluate import EvalResult
from tasks.init_from import LINEAGE, resolve_model
from tasks.model import EMBEDDED, EMBEDDED_HUB_ID, ModelRef, from_hub_id, hub_id
from tasks.package import package
from tasks.packaging.card import write_model_card
from tasks.packaging.pyfunc import pinned_requirements, shipped_modules
from tasks.stage import RunRef
from tasks.tracking import RunLogger
from tasks.training.common import Trained
from tasks.vocab import ExtensionResult
from tests.helpers import random_lora

ROOT = Path(__file__).resolve().parents[3]
IDS = torch.tensor([[1, 20, 300, 4000, 12, 7]])
NAME = "tiny-portable"
PROMPTS = ["Hello there", "What is 2+2?"]


@pytest.fixture()
def embedded_is_tiny(tiny_model_dir, tmp_path, monkeypatch) -> Path:
    """A tuneforge cache whose converted embedded model is the tiny model; returns the cache folder."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_model_dir, cache / "models" / "smollm2-135m-instruct")
    monkeypatch.setenv("TUNEFORGE_CACHE", str(cache))
    return cache


@pytest.fixture()
def packaged(embedded_is_tiny, tmp_path, mlflow_uri):
    """Run the package stage on a random LoRA of the (tiny) embedded model; register it as NAME@champion."""
    model = ModelRef.of(EMBEDDED)
    assert model.path == str(embedded_is_tiny.resolve() / "models" / "smollm2-135m-instruct")
    adapter, peft_model = random_lora(Path(model.path))
    with torch.no_grad():
        expected = peft_model.eval()(input_ids=IDS).logits
    adapter.save(tmp_path / "train" / "adapter")
    trained_on = json.loads((tmp_path / "train" / "adapter" / "adapter_config.json").read_text())
    assert trained_on["base_model_name_or_path"] == model.path  # what PEFT writes: this machine's cache path

    config = load_config(ROOT / "conf" / "smollm2" / "lora.yaml", [f"package.registered_model_name={NAME}"])
    logger, _ = RunLogger.start_or_resume(mlflow_uri, "portable", "package", "digest", tmp_path / "artifacts")
    verdict = GateVerdict(passed=True, reasons=[], rows=[], confidence=0.95)
    evaluation = EvalResult(base={"perplexity": 12.0}, tuned={"perplexity": 10.0}, verdict=verdict,
                            report_path=tmp_path / "eval" / "report.md", samples=[])
    model.load_tokenizer().save_pretrained(tmp_path / "tokenizer")  # as extend_tokenizer writes it: no weights
    vocab = ExtensionResult(tokenizer_dir=tmp_path / "tokenizer", added=[], tokens_per_word_before=1.0,
                            tokens_per_word_after=1.0)
    data = SimpleNamespace(digest="0" * 64, licenses={"demo": "Apache-2.0"}, counts={"kept": 1})
    result = package.fn(config, model, Trained(adapter_dir=tmp_path / "train" / "adapter"), vocab, data, evaluation,
                        tmp_path / "package", RunRef(run_id=logger.run_id, tracking_uri=mlflow_uri))
    assert result.registered_model == NAME and "champion" in result.aliases
    return SimpleNamespace(pkg=result.package_dir, mlflow_dir=tmp_path / "package" / "mlflow_model",
                           expected=expected, uri=mlflow_uri, cache=embedded_is_tiny, version=result.version)


def test_hub_id_maps_the_embedded_model_both_ways(embedded_is_tiny, tmp_path, monkeypatch):
    assert hub_id(EMBEDDED) == EMBEDDED_HUB_ID
    for ref in ("HuggingFaceTB/SmolLM2-360M", "gpt2", str(tmp_path)):
        assert hub_id(ref) == ref and from_hub_id(ref) == ref
    assert from_hub_id(EMBEDDED_HUB_ID) == EMBEDDED
    ref = ModelRef.recorded(EMBEDDED_HUB_ID)
    assert ref.name_or_path == EMBEDDED and ref.hub_id == EMBEDDED_HUB_ID
    assert ref.path == str(embedded_is_tiny.resolve() / "models" / "smollm2-135m-instruct")
    # no converted copy and no wheel to make one (a clean serving host): the Hub id goes to transformers as it is
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("tasks.model._GGUF_PACKAGE", "no_such_wheel_here")
    assert from_hub_id(EMBEDDED_HUB_ID) == EMBEDDED_HUB_ID and ModelRef.recorded(EMBEDDED_HUB_ID).path == EMBEDDED_HUB_ID


def test_the_package_names_the_hub_id_and_loads_back_offline(packaged, tmp_path):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    pkg = packaged.pkg
    assert json.loads((pkg / "adapter_config.json").read_text())["base_model_name_or_path"] == EMBEDDED_HUB_ID
    assert json.loads((pkg / LINEAGE).read_text())["name_or_path"] == EMBEDDED_HUB_ID
    card = (pkg / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == EMBEDDED_HUB_ID
    assert f"adapter for `{EMBEDDED_HUB_ID}`" in card and str(packaged.cache) not in card
    flavor = yaml.safe_load((packaged.mlflow_dir / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["config"]["base_model"] == EMBEDDED_HUB_ID
    client = mlflow.MlflowClient(packaged.uri)
    assert client.get_model_version(NAME, packaged.version).tags["base_model"] == EMBEDDED_HUB_ID
    assert not [p for p in pkg.rglob("*") if p.is_file() and str(packaged.cache) in p.read_text(errors="ignore")]

    # init_from reads the Hub id (from base_model.json, or PEFT's adapter_config.json) and folds onto the local copy
    bare = shutil.copytree(pkg, tmp_path / "bare")
    (bare / LINEAGE).unlink()
    for name, source in (("lineage", pkg), ("bare", bare)):
        ref = resolve_model(ModelConfig(init_from=str(source)), tmp_path / f"init-{name}")
        with torch.no_grad():
            torch.testing.assert_close(ref.load_model()(input_ids=IDS).logits, packaged.expected, atol=1e-4, rtol=1e-4)
    # the registered pyfunc loads by alias and generates
    replies = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(PROMPTS)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)


def test_a_local_base_folder_is_named_in_the_card_but_not_claimed_as_a_hub_id(tiny_model_dir, tmp_path):
    evaluation = {"verdict": {"rows": [], "passed": True, "confidence": 0.95, "reasons": []}, "base": {}, "tuned": {}}
    card = write_model_card(tmp_path / "README.md", name="local", base_model=str(tiny_model_dir), method="sft / lora",
                            config={}, data={"digest": "0", "licenses": {}, "counts": {}}, evaluation=evaluation,
                            tokenizer_added=[], trained_on=str(tiny_model_dir)).read_text()
    assert "base_model" not in yaml.safe_load(card.split("---")[1])  # the Hub's metadata field takes Hub ids only
    assert f"adapter for `{tiny_model_dir}`" in card


def test_the_pyfunc_ships_its_code_and_pins_what_it_imports():
    shipped = set(shipped_modules())
    assert {"tasks.packaging.pyfunc", "tasks.model", "tasks.training.loading", "evals.perplexity"} <= shipped
    pipeline = {m for m in shipped if m.split(".")[0] == "flows" or m in {
        "tasks.stage", "tasks.package", "tasks.config", "tasks.tracking", "tasks.train", "tasks.evaluate"}}
    assert not pipeline, f"the pyfunc's load path pulls in the pipeline: {sorted(pipeline)}"
    pins = dict(r.split("==") for r in pinned_requirements())
    for dist in ("torch", "transformers", "peft", "mlflow"):
        assert pins[dist] == importlib.metadata.version(dist).split("+")[0]
    assert "tuneforge" not in pins


def _clean_python(root: Path) -> Path:
    """A virtualenv that sees this project's installed packages but not the project: the packages' folder is added
    by a .pth line, and a folder added that way has its own .pth files ignored, so the editable tuneforge finder
    (__editable__.tuneforge-*.pth) is never installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"])
    assert any(purelib.glob("__editable__*tuneforge*.pth"))  # the finder exists here; it must not act there
    site = next((root / "lib").glob("python3*/site-packages"))
    (site / "project_packages.pth").write_text(f"{purelib}\n")
    return root / "bin" / "python"


_CLEAN_LOAD = r"""
import json, sys, time
try:
    import tasks
except ModuleNotFoundError:
    pass
else:
    sys.exit(f"tuneforge is importable before loading: {tasks.__file__}")
import mlflow

mlflow.set_tracking_uri(sys.argv[1])
start = time.perf_counter()
model = mlflow.pyfunc.load_model(sys.argv[2])
replies = model.predict(json.loads(sys.argv[3]))
import tasks

heavy = {"prefect", "flows", "trl", "datasets", "lm_eval", "great_expectations", "presidio_analyzer"}
print(json.dumps({"replies": replies, "tasks": tasks.__file__, "seconds": time.perf_counter() - start,
                  "pipeline": sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in
                                     {"tasks.stage", "tasks.package", "tasks.config", "tasks.tracking"})}))
"""


@pytest.mark.e2e
def test_the_registered_model_loads_where_tuneforge_is_not_installed(packaged, tmp_path):
    requirements = (packaged.mlflow_dir / "requirements.txt").read_text().split()
    assert "tuneforge" not in " ".join(requirements) and f"peft=={importlib.metadata.version('peft')}" in requirements
    python = _clean_python(tmp_path / "clean-venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TUNEFORGE_CACHE": str(packaged.cache)}
    start = time.perf_counter()
    proc = subprocess.run([str(python), "-c", _CLEAN_LOAD, packaged.uri, f"models:/{NAME}@champion",
                           json.dumps(PROMPTS)], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"clean load + predict: {out['seconds']:.1f} s, subprocess {time.perf_counter() - start:.1f} s")
    assert len(out["replies"]) == 2 and all(isinstance(r, str) for r in out["replies"])
    assert not Path(out["tasks"]).is_relative_to(ROOT) and "/code/tasks/" in out["tasks"]  # the model's own copy
    assert out["pipeline"] == []
