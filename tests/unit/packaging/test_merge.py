import json
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError
from safetensors.torch import load_file

from tasks.model import ModelRef
from tasks.packaging.merge import MergeConfig, merge_adapter, merge_adapters, model_soup, run_merge

ADAPTER_FILE = "adapter_model.safetensors"


def _load_base(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter whose A and B are both random, so it really changes the model (B starts at 0)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        _load_base(base_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return [_make_adapter(tiny_model_dir, root / f"a{seed}", seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)("The capital of France is", return_tensors="pt")


def _greedy(model, prompt) -> list[int]:
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12)
    return out[0].tolist()


def _logits(model, prompt) -> torch.Tensor:
    with torch.no_grad():
        return model(**prompt).logits


def test_merged_model_generates_exactly_like_base_plus_adapter(tiny_model_dir, adapters, prompt, tmp_path):
    from peft import PeftModel

    out = merge_adapter(ModelRef.of(str(tiny_model_dir)), adapters[0], tmp_path / "merged", dtype="float32")
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    merged = _load_base(out)
    unmerged = PeftModel.from_pretrained(_load_base(tiny_model_dir), str(adapters[0])).eval()
    base = _load_base(tiny_model_dir)

    assert not torch.allclose(_logits(base, prompt), _logits(merged, prompt), atol=1e-3)  # adapter is no no-op
    torch.testing.assert_close(_logits(merged, prompt), _logits(unmerged, prompt), atol=1e-4, rtol=1e-4)
    assert _greedy(merged, prompt) == _greedy(unmerged, prompt)
    assert not any("lora" in k for k in load_file(out / "model.safetensors"))


def test_merge_adapter_casts_to_requested_dtype(tiny_model_dir, adapters, tmp_path):
    out = merge_adapter(ModelRef.of(str(tiny_model_dir)), adapters[0], tmp_path / "bf16", dtype="bfloat16")
    tensors = load_file(out / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}


def test_ties_merge_differs_from_both_inputs_and_loads(tiny_model_dir, adapters, prompt, tmp_path):
    from peft import PeftModel

    out = merge_adapters(ModelRef.of(str(tiny_model_dir)), adapters, [1.0, 1.0], "ties", 0.5, tmp_path / "ties")
    merged, a, b = (load_file(p / ADAPTER_FILE) for p in (out, *adapters))
    assert merged.keys() == a.keys() and len(merged) == 8  # 2 layers x (q, v) x (A, B)
    for key in merged:
        assert not torch.allclose(merged[key], a[key]) and not torch.allclose(merged[key], b[key])
    # density 0.5 keeps the top half of each input by magnitude: an entry is zero only when pruned in
    # both (about 0.5 * 0.5 of them), versus no zeros at all in the dense inputs
    assert 0.15 < (merged[next(iter(merged))] == 0).float().mean() < 0.35
    assert all((t != 0).all() for t in a.values())

    model = PeftModel.from_pretrained(_load_base(tiny_model_dir), str(out)).eval()
    logits = _logits(model, prompt)
    assert torch.isfinite(logits).all()
    assert not torch.allclose(logits, _logits(_load_base(tiny_model_dir), prompt), atol=1e-3)


def test_svd_merge_reproduces_weighted_sum_of_deltas(tiny_model_dir, adapters, tmp_path):
    # with rank r1 + r2 the SVD re-factorisation is exact: dW = 0.5 dW1 + 0.5 dW2
    out = merge_adapters(ModelRef.of(str(tiny_model_dir)), adapters, [0.5, 0.5], "svd", None, tmp_path / "svd", svd_rank=8)
    cfg = json.loads((out / "adapter_config.json").read_text())
    merged, a, b = (load_file(p / ADAPTER_FILE) for p in (out, *adapters))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"

    def delta(t, scale):
        return t[f"{prefix}.lora_B.weight"] @ t[f"{prefix}.lora_A.weight"] * scale

    expected = 0.5 * delta(a, 8 / 4) + 0.5 * delta(b, 8 / 4)
    torch.testing.assert_close(delta(merged, cfg["lora_alpha"] / cfg["r"]), expected, atol=1e-5, rtol=1e-4)


def test_model_soup_is_the_mean_of_checkpoints(adapters, tmp_path):
    out = model_soup(adapters, tmp_path / "soup")
    soup, a, b = (load_file(p / ADAPTER_FILE) for p in (out, *adapters))
    assert soup.keys() == a.keys()
    for key in soup:
        torch.testing.assert_close(soup[key], (a[key] + b[key]) / 2, atol=0, rtol=0)
    assert (out / "adapter_config.json").read_text() == (adapters[0] / "adapter_config.json").read_text()


def test_model_soup_rejects_mismatched_checkpoints(adapters, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "model.safetensors").write_bytes((adapters[0] / ADAPTER_FILE).read_bytes())
    with pytest.raises(ValueError, match="expected"):
        model_soup([adapters[0], odd], tmp_path / "out")
    with pytest.raises(ValueError, match="at least two"):
        model_soup([adapters[0]], tmp_path / "out")


def test_run_merge_soup_then_fold(tiny_model_dir, adapters, tmp_path):
    cfg = MergeConfig(method="soup", sources=adapters, fold_into_base=True, dtype="float32")
    out = run_merge(cfg, ModelRef.of(str(tiny_model_dir)), tmp_path)
    assert out == tmp_path / "model" and (tmp_path / "soup" / ADAPTER_FILE).is_file()
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_merge_config_yaml_and_validation(tmp_path):
    cfg = MergeConfig.model_validate(yaml.safe_load(
        "method: dare_ties\nsources: [runs/a/adapter, runs/b/adapter]\nweights: [0.7, 0.3]\ndensity: 0.4\n"
    ))
    assert cfg.sources == [Path("runs/a/adapter"), Path("runs/b/adapter")] and cfg.density == 0.4
    assert cfg.fold_into_base is False and cfg.dtype == "bfloat16"
    with pytest.raises(ValidationError, match="needs `density`"):
        MergeConfig(method="ties", sources=["a", "b"], weights=[1, 1])
    with pytest.raises(ValidationError, match="2 weights for 3 sources"):
        MergeConfig(method="linear", sources=["a", "b", "c"], weights=[1, 1])
    with pytest.raises(ValidationError, match="remove `weights`"):
        MergeConfig(method="soup", sources=["a", "b"], weights=[1, 1])
    with pytest.raises(ValidationError):
        MergeConfig(method="cat", sources=["a", "b"], weights=[1, 1])
    with pytest.raises(ValidationError):
        MergeConfig(sources=["a"], densty=0.5)
