"""`model.init_from`: a package folder, an MLflow model, or a missing reference that fails before training."""
import json

import pytest
import torch

from tasks.config import ModelConfig
from tasks.init_from import LINEAGE, InitFromError, resolve_model
from tasks.model import ModelRef, load_model
from tasks.packaging.pyfunc import save_pyfunc
from tasks.training.adapters import PromptTuning
from tasks.training.config import PromptLearningConfig
from tests.helpers import random_lora

IDS = torch.tensor([[1, 20, 300, 4000, 12, 7]])


def _lora_package(tiny_model_dir, out):
    """What the package stage writes for an adapter: the adapter and the base it applies to."""
    adapter, model = random_lora(tiny_model_dir)
    expected = model.eval()(input_ids=IDS).logits
    adapter.save(out)
    (out / LINEAGE).write_text(json.dumps({"name_or_path": str(tiny_model_dir)}))
    return expected


def test_an_adapter_package_is_folded_into_its_base(tiny_model_dir, tmp_path):
    expected = _lora_package(tiny_model_dir, tmp_path / "pkg")
    ref = resolve_model(ModelConfig(init_from=str(tmp_path / "pkg")), tmp_path / "model")
    assert ref.init_from == str(tmp_path / "pkg") and ref.path.endswith("model")
    model = ref.load_model()
    assert not hasattr(model, "peft_config")  # a plain model: the next stage trains a fresh adapter on it
    torch.testing.assert_close(model(input_ids=IDS).logits, expected, atol=1e-4, rtol=1e-4)


def test_an_mlflow_model_folder_is_read_through_its_artifacts(tiny_model_dir, tmp_path):
    expected = _lora_package(tiny_model_dir, tmp_path / "pkg")
    save_pyfunc(tmp_path / "mlflow_model", tmp_path / "pkg", tiny_model_dir, ModelRef.of(str(tiny_model_dir)), False)
    ref = resolve_model(ModelConfig(init_from=str(tmp_path / "mlflow_model")), tmp_path / "model")
    torch.testing.assert_close(ref.load_model()(input_ids=IDS).logits, expected, atol=1e-4, rtol=1e-4)


def test_a_full_weight_package_is_used_as_it_is(tiny_model_dir, tmp_path):
    ref = resolve_model(ModelConfig(init_from=str(tiny_model_dir), dtype="bfloat16"), tmp_path / "model")
    assert ref.path == str(tiny_model_dir.resolve()) and ref.dtype == "bfloat16"
    assert not (tmp_path / "model").exists()


def test_a_prompt_learning_adapter_cannot_be_folded(tiny_model_dir, tmp_path):
    adapter = PromptTuning(PromptLearningConfig(num_virtual_tokens=4))
    adapter.apply(load_model(str(tiny_model_dir)))
    adapter.save(tmp_path / "pkg")
    with pytest.raises(InitFromError, match="prompt-learning or bottleneck adapter \\(PROMPT_TUNING\\)"):
        resolve_model(ModelConfig(init_from=str(tmp_path / "pkg")), tmp_path / "model")


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(InitFromError, match=r"model.init_from=.*nope: no such folder"):
        resolve_model(ModelConfig(init_from=str(tmp_path / "nope")), tmp_path / "model")


def test_an_unknown_registered_model_is_named(tmp_path, mlflow_uri):
    with pytest.raises(InitFromError, match=r"model.init_from=models:/no-such-model@champion: not found in MLflow"):
        resolve_model(ModelConfig(init_from="models:/no-such-model@champion"), tmp_path / "model", mlflow_uri)


def test_a_stage_reference_outside_a_chain_is_an_error(tmp_path):
    with pytest.raises(InitFromError, match="only inside a chain"):
        resolve_model(ModelConfig(init_from="stage:sft"), tmp_path / "model")
