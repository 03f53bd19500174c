"""Optimizer groups: layer-wise learning rates, decay only on matrices, LoRA+ ratios, GaLore's projected group."""
import pytest
import torch

from tasks.model import load_model
from tasks.training.methods import apply_method
from tasks.training.optim import build_optimizer, layer_rule, param_groups
from tests.unit.training.support import fast


@pytest.fixture()
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir))


def _lr_of(optimizer, model):
    by_id = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters() if p.requires_grad}


def test_layer_rules():
    assert layer_rule("layers.0-15")("model.layers.15.mlp.up_proj.weight")
    assert not layer_rule("layers.0-15")("model.layers.16.mlp.up_proj.weight")
    assert layer_rule("layers.3")("base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight")
    assert layer_rule("embeddings")("model.embed_tokens.weight") and layer_rule("head")("lm_head.weight")
    assert layer_rule("mlp")("model.layers.0.mlp.down_proj.weight")


def test_layer_wise_learning_rates_map_to_groups(tiny):
    cfg = fast("full", learning_rate=1e-3, weight_decay=0.1,
               layer_lrs={"embeddings": 1e-5, "layers.0": 2e-5, "layers.1-1": 3e-5})
    model = apply_method(tiny, cfg)
    optimizer = build_optimizer(model, cfg)
    lrs = _lr_of(optimizer, model)
    assert lrs["model.embed_tokens.weight"] == 1e-5
    assert {v for k, v in lrs.items() if ".layers.0." in k} == {2e-5}
    assert {v for k, v in lrs.items() if ".layers.1." in k} == {3e-5}
    assert lrs["model.norm.weight"] == 1e-3  # unmatched: the base rate
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert decay[id(params["model.layers.0.mlp.up_proj.weight"])] == 0.1
    assert decay[id(params["model.layers.0.input_layernorm.weight"])] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(params)


def test_a_rule_matching_nothing_is_an_error(tiny):
    cfg = fast("lora", layer_lrs={"head": 1e-4})  # frozen under LoRA (and tied to the embeddings)
    with pytest.raises(ValueError, match=r"layer_lrs: \['head'\]"):
        param_groups(apply_method(tiny, cfg), cfg)


def test_loraplus_gives_b_the_ratio(tiny):
    cfg = fast("lora", learning_rate=1e-4, lora={"rank": 4, "target_modules": ["q_proj"], "loraplus_lr_ratio": 16})
    model = apply_method(tiny, cfg)
    lrs = _lr_of(build_optimizer(model, cfg), model)
    assert {v for k, v in lrs.items() if "lora_A" in k} == {1e-4}
    assert [v for k, v in lrs.items() if "lora_B" in k] == pytest.approx([1.6e-3, 1.6e-3])


def test_paged_optimizer_only_with_cuda(tiny):
    cfg = fast("lora")
    optimizer = build_optimizer(apply_method(tiny, cfg), cfg.model_copy(update={"method": "qlora"}))
    expected = "PagedAdamW32bit" if torch.cuda.is_available() else "AdamW"
    assert type(optimizer).__name__ == expected
