"""The `train:` schema: one method key, a section per family, errors that name the key; every method YAML loads."""
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.config import load_config
from tasks.training.config import TrainConfig

CONF = Path(__file__).resolve().parents[3] / "conf" / "smollm2"
METHODS = ["lora", "dora", "rslora", "qlora", "adalora", "ia3", "prefix", "prompt", "ptuning", "full", "partial",
           "galore"]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_has_a_yaml_that_runs_it(method):
    path = CONF / f"{method}.yaml"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# make pipeline") and (method == "lora" or f"CONF=conf/smollm2/{method}.yaml" in first)
    assert load_config(path).train.method == method


def test_defaults_are_packed_lora_without_dropout():
    cfg = TrainConfig()
    assert (cfg.method, cfg.lora.rank, cfg.lora.dropout, cfg.packing, cfg.precision, cfg.layer_lrs) == (
        "lora", 8, 0.0, True, "auto", {})


def test_packing_defaults_off_only_for_prompt_learning():
    assert [TrainConfig(method=m).packing for m in ("prompt", "prefix", "ptuning", "ia3", "full")] == [
        False, False, False, True, True]
    assert TrainConfig(method="lora", packing=False).packing is False


def test_typos_and_wrong_types_name_the_key():
    with pytest.raises(ValidationError, match="lora.ranks"):
        TrainConfig.model_validate({"lora": {"ranks": 8}})
    with pytest.raises(ValidationError, match="method"):
        TrainConfig.model_validate({"method": "lora2"})
    with pytest.raises(ValidationError, match="layer_lrs"):
        TrainConfig.model_validate({"layer_lrs": {"head": "fast"}})


@pytest.mark.parametrize("raw,message", [
    ({"method": "ia3", "lora": {"loraplus_lr_ratio": 16}}, "LoRA methods"),
    ({"lora": {"loraplus_lr_ratio": 16}, "layer_lrs": {"layers.0": 1e-4}}, "choose one"),
    ({"method": "prompt", "packing": True}, "virtual tokens"),
    ({"method": "adalora", "max_steps": 10, "adalora": {"tinit": 5, "tfinal": 5}}, "tinit"),
    ({"method": "prompt", "prompt_learning": {"init": "text"}}, "init_text"),
    ({"method": "partial", "partial": {"last_n_layers": 0}}, "select something"),
])
def test_incompatible_combinations_are_refused(raw, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig.model_validate(raw)
