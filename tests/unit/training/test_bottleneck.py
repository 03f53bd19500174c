"""Bottleneck adapters as a registered PEFT method, on the tiny Llama (hidden 64, 2 layers)."""
import json

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tasks.training.bottleneck import (BottleneckPeftConfig, bottleneck_parameter_count, fuse_adapters, is_bottleneck,
                                       peft_config)
from tasks.training.config import BottleneckConfig

BATCH = {"input_ids": torch.tensor([[1, 20, 300, 4000, 12, 7, 99, 5]]),
         "attention_mask": torch.ones(1, 8, dtype=torch.long)}


@pytest.fixture()
def load_base(tiny_model_dir):
    return lambda: AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**BATCH).logits


def randomize(model, seed: int, std: float = 0.2) -> None:
    """Random values for every adapter tensor (up starts at zero, which would hide the adapter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".bottleneck_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.mark.parametrize("variant,reduction,by_hand", [
    ("houlsby", 4, 2 * 2 * (2 * 64 * 16 + 16 + 64)),  # 8512: width 16, two adapters per layer
    ("houlsby", 16, 2 * 2 * (2 * 64 * 4 + 4 + 64)),   # 2320
    ("pfeiffer", 4, 2 * 1 * (2 * 64 * 16 + 16 + 64)),  # 4256: after the FFN only
    ("pfeiffer", 16, 2 * 1 * (2 * 64 * 4 + 4 + 64)),   # 1160
])
def test_trainable_parameters_match_the_formula(load_base, variant, reduction, by_hand):
    cfg = BottleneckConfig(variant=variant, reduction_factor=reduction)
    model = get_peft_model(load_base(), peft_config(cfg))
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == bottleneck_parameter_count(64, 2, cfg) == by_hand
    assert all(".bottleneck_down." in n or ".bottleneck_up." in n for n in trainable)
    wrapped = sorted({n.split(".bottleneck_")[0].removeprefix("base_model.model.model.") for n in trainable})
    expected = ["mlp.down_proj"] if variant == "pfeiffer" else ["mlp.down_proj", "self_attn.o_proj"]
    assert wrapped == [f"layers.{i}.{m}" for i in range(2) for m in expected]
    assert model.get_nb_trainable_parameters() == (by_hand, by_hand + sum(p.numel() for p in load_base().parameters()))
    model.print_trainable_parameters()


def test_peft_config_from_section():
    config = peft_config(BottleneckConfig(variant="pfeiffer", reduction_factor=8, non_linearity="gelu"))
    assert (config.peft_type, config.task_type, config.target_modules) == ("BOTTLENECK", "CAUSAL_LM", ["down_proj"])
    assert (config.variant, config.reduction_factor, config.non_linearity) == ("pfeiffer", 8, "gelu")
    assert config.width(64) == 8
    assert BottleneckPeftConfig(bottleneck_size=12).width(64) == 12
    with pytest.raises(ValueError, match="no bottleneck"):
        BottleneckPeftConfig(reduction_factor=128).width(64)
    with pytest.raises(ValueError, match="variant"):
        BottleneckPeftConfig(variant="parallel")


def test_identity_at_init_training_moves_it_and_disable_restores_the_base(load_base):
    base = load_base()
    reference = logits(base)
    frozen = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = get_peft_model(base, peft_config(BottleneckConfig(reduction_factor=4, non_linearity="silu")))
    assert torch.equal(logits(model), reference)  # up = 0: exactly the base

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(**BATCH, labels=BATCH["input_ids"]).loss
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if ".bottleneck_" not in n)
    optimizer.step()
    model.eval()

    after = logits(model)
    assert (after - reference).abs().max() > 1e-3
    with model.disable_adapter():
        assert torch.equal(logits(model), reference)  # the DPO/PPO reference
    assert torch.equal(logits(model), after)  # re-enabled afterwards

    base_params = {n.removeprefix("base_model.model.").replace(".base_layer.", "."): p
                   for n, p in model.named_parameters() if ".bottleneck_" not in n}
    assert base_params.keys() == frozen.keys()
    assert not any(p.requires_grad for p in base_params.values())
    assert all(torch.equal(p, frozen[n]) for n, p in base_params.items())


def test_save_load_round_trip_and_no_merge(load_base, tmp_path):
    base = load_base()
    reference = logits(base)
    model = get_peft_model(base, peft_config(BottleneckConfig(variant="houlsby", reduction_factor=8))).eval()
    randomize(model, seed=1)
    expected = logits(model)
    model.save_pretrained(tmp_path / "a")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "a").iterdir()}
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert (saved["peft_type"], saved["variant"], saved["reduction_factor"]) == ("BOTTLENECK", "houlsby", 8)
    assert len(load_file(tmp_path / "a" / "adapter_model.safetensors")) == 2 * 2 * 4  # layers x sites x (W, b, W, b)

    loaded = PeftModel.from_pretrained(load_base(), tmp_path / "a").eval()
    assert is_bottleneck(loaded) and not is_bottleneck(load_base())
    assert loaded.peft_config["default"].peft_type == "BOTTLENECK"
    assert torch.equal(logits(loaded), expected)
    assert not torch.allclose(expected, reference)
    with pytest.raises(ValueError, match="cannot be merged"):
        loaded.merge_and_unload()
    assert torch.equal(logits(loaded.unload()), reference)


def test_fusion_equals_the_weighted_sum_of_adapter_outputs(load_base, tmp_path):
    dirs = []
    for i, reduction in enumerate((16, 8)):  # widths 4 and 8
        model = get_peft_model(load_base(), peft_config(BottleneckConfig(reduction_factor=reduction,
                                                                         non_linearity="gelu")))
        randomize(model, seed=10 + i)
        model.save_pretrained(tmp_path / f"a{i}")
        dirs.append(tmp_path / f"a{i}")
    weights = (0.3, 0.7)
    out = fuse_adapters(dirs, list(weights), tmp_path / "fused")
    assert json.loads((out / "adapter_config.json").read_text())["bottleneck_size"] == 12
    fused = PeftModel.from_pretrained(load_base(), out).eval()
    assert fused.peft_config["default"].width(64) == 12

    # reference: at every adapted module, out + sum_i w_i * up_i(gelu(down_i(out))) from the saved tensors
    states = [load_file(d / "adapter_model.safetensors") for d in dirs]
    base = load_base()
    sites = {k.removeprefix("base_model.model.").split(".bottleneck_")[0] for k in states[0]}
    assert len(sites) == 4

    def hook(site):
        def add_adapters(module, inputs, output):
            delta = 0
            for w, s in zip(weights, states):
                p = lambda name: s[f"base_model.model.{site}.bottleneck_{name}"]  # noqa: E731
                delta = delta + w * F.linear(F.gelu(F.linear(output, p("down.weight"), p("down.bias"))),
                                             p("up.weight"), p("up.bias"))
            return output + delta
        return add_adapters

    plain = logits(base)
    for site in sites:
        base.get_submodule(site).register_forward_hook(hook(site))
    expected = logits(base)
    assert (expected - plain).abs().max() > 1e-2  # the adapters matter
    torch.testing.assert_close(logits(fused), expected, atol=1e-5, rtol=0)


def test_fusion_refuses_incompatible_adapters(load_base, tmp_path):
    for name, cfg in {"h": BottleneckConfig(), "p": BottleneckConfig(variant="pfeiffer"),
                      "t": BottleneckConfig(non_linearity="tanh")}.items():
        get_peft_model(load_base(), peft_config(cfg)).save_pretrained(tmp_path / name)
    with pytest.raises(ValueError, match="variant"):
        fuse_adapters([tmp_path / "h", tmp_path / "p"], [0.5, 0.5], tmp_path / "out")
    with pytest.raises(ValueError, match="non_linearity"):
        fuse_adapters([tmp_path / "h", tmp_path / "t"], [0.5, 0.5], tmp_path / "out")
    with pytest.raises(ValueError, match="one weight per adapter"):
        fuse_adapters([tmp_path / "h", tmp_path / "h"], [1.0], tmp_path / "out")
    assert not (tmp_path / "out").exists()
