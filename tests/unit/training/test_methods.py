"""One short real training run per method on the tiny Llama (hidden 64, 2 layers, q/o 64->64, k/v 64->32, mlp 128).

Each asserts what makes the method that method: which parameters train and how many (computed from the shapes),
what the saved adapter or model folder holds, and that the loss falls within a few high-learning-rate steps.
"""
import json

import pytest
import torch
from safetensors import safe_open

from tasks.model import ModelRef
from tasks.training.adapters import Adapter
from tasks.training.methods import apply_method, count_parameters, freeze_for_partial, load_base
from tasks.training.sft import train_sft
from tests.unit.training.support import fast

QV = {"target_modules": ["q_proj", "v_proj"]}
LORA_QV = 2 * 4 * ((64 + 64) + (64 + 32))  # 2 layers x r=4 x (in+out) of q_proj and v_proj = 1792
TINY_TOTAL = 3_219_776  # 49152x64 tied embeddings + 2 blocks + final norm


def _keys(path):
    with safe_open(str(path), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _config(result):
    return json.loads((result.adapter_dir / "adapter_config.json").read_text())


def _train(tmp_path, tiny_model_dir, chat_path, method, **overrides):
    cfg = fast(method, max_steps=6, **overrides)
    result = train_sft(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path / method)
    assert result.method == method
    assert result.final_loss < result.first_loss - 0.03, (result.first_loss, result.final_loss)
    return result


@pytest.mark.parametrize("method,use_dora,use_rslora,magnitude", [
    ("lora", False, False, 0), ("rslora", False, True, 0), ("dora", True, False, 2 * (64 + 32))])
def test_lora_family(tmp_path, tiny_model_dir, chat_path, method, use_dora, use_rslora, magnitude):
    result = _train(tmp_path, tiny_model_dir, chat_path, method, lora={"rank": 4, "alpha": 8, **QV})
    assert result.trainable_params == LORA_QV + magnitude
    config = _config(result)
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8)
    assert (config["use_dora"], config["use_rslora"]) == (use_dora, use_rslora)
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    keys = _keys(result.adapter_dir / "adapter_model.safetensors")
    prefix = "base_model.model.model.layers.0.self_attn"
    assert keys[f"{prefix}.q_proj.lora_A.weight"] == (4, 64) and keys[f"{prefix}.v_proj.lora_B.weight"] == (32, 4)
    assert len([k for k in keys if "lora_magnitude_vector" in k]) == (4 if use_dora else 0)
    assert len(keys) == 8 + (4 if use_dora else 0)
    assert result.model_dir is None


def test_qlora_trains_adapters_on_a_4bit_base(tmp_path, tiny_model_dir, chat_path):
    result = _train(tmp_path, tiny_model_dir, chat_path, "qlora", lora={"rank": 4, **QV})
    assert result.trainable_params == LORA_QV
    assert result.total_params == TINY_TOTAL + LORA_QV  # 4-bit weights counted at their unpacked size
    config = _config(result)
    assert (config["peft_type"], config["r"], config["use_dora"]) == ("LORA", 4, False)
    assert len(_keys(result.adapter_dir / "adapter_model.safetensors")) == 8


def test_qlora_base_is_nf4_double_quantised(tiny_model_dir):
    import bitsandbytes as bnb

    model = load_base(fast("qlora"), ModelRef.of(str(tiny_model_dir)))
    q_proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, bnb.nn.Linear4bit)
    assert q_proj.weight.quant_state.quant_type == "nf4" and q_proj.weight.quant_state.nested
    assert q_proj.weight.dtype == torch.uint8 and q_proj.weight.numel() == 64 * 64 // 2


def test_adalora_prunes_rank_on_schedule(tmp_path, tiny_model_dir, chat_path):
    result = _train(tmp_path, tiny_model_dir, chat_path, "adalora",
                    adalora={"init_r": 6, "target_r": 3, "tinit": 1, "tfinal": 2, **QV})
    assert result.trainable_params == 2 * ((6 * 64 + 64 * 6 + 6) + (6 * 64 + 32 * 6 + 6))  # A, B and E (the SVD)
    config = _config(result)
    assert (config["peft_type"], config["init_r"], config["target_r"], config["total_step"]) == ("ADALORA", 6, 3, 6)
    kept = {k: sum(v) for k, v in config["rank_pattern"].items()}  # set by update_and_allocate (AdaLoRABudget)
    assert len(kept) == 4 and sum(kept.values()) == 4 * 3  # budget = target_r x matrices
    keys = _keys(result.adapter_dir / "adapter_model.safetensors")
    saved_ranks = sorted(v[0] for k, v in keys.items() if "lora_E" in k)
    assert saved_ranks == sorted(kept.values())  # PEFT saves the pruned shapes
    loaded = dict(Adapter.load(load_base(fast("lora"), ModelRef.of(str(tiny_model_dir))), result.adapter_dir).named_parameters())
    with safe_open(str(result.adapter_dir / "adapter_model.safetensors"), "pt") as f:
        for key in f.keys():  # and loads them back exactly (PEFT's rank_pattern warning on load is spurious)
            name = key + ".default"  # AdaLoRA's A, B, E are ParameterDicts keyed by adapter name
            assert torch.equal(loaded[name], f.get_tensor(key)), key


def test_ia3_learns_scaling_vectors(tmp_path, tiny_model_dir, chat_path):
    result = _train(tmp_path, tiny_model_dir, chat_path, "ia3", learning_rate=0.3)
    assert result.trainable_params == 2 * (32 + 32 + 128)  # k, v outputs; down_proj input (feed-forward)
    config = _config(result)
    assert config["peft_type"] == "IA3" and config["feedforward_modules"] == ["down_proj"]
    keys = _keys(result.adapter_dir / "adapter_model.safetensors")
    assert keys["base_model.model.model.layers.1.mlp.down_proj.ia3_l"] == (1, 128)
    assert keys["base_model.model.model.layers.1.self_attn.k_proj.ia3_l"] == (32, 1)


@pytest.mark.parametrize("variant,adapters_per_layer", [("houlsby", 2), ("pfeiffer", 1)])
def test_bottleneck_adapters_train_save_and_serve_unmerged(tmp_path, tiny_model_dir, chat_path, variant,
                                                           adapters_per_layer):
    from tasks.training.loading import load_trained

    result = _train(tmp_path, tiny_model_dir, chat_path, "bottleneck", learning_rate=3e-2,
                    bottleneck={"variant": variant, "reduction_factor": 4})
    assert result.trainable_params == 2 * adapters_per_layer * (2 * 64 * 16 + 16 + 64)  # 2 layers, r = 64 / 4
    assert _config(result)["peft_type"] == "BOTTLENECK"
    model, _ = load_trained(ModelRef.of(str(tiny_model_dir)), tiny_model_dir, adapter_dir=result.adapter_dir)
    assert type(model).__name__ == "PeftModelForCausalLM"  # nonlinear: kept as an adapter, never folded
    ids = torch.tensor([[1, 2, 3, 4]])
    with model.disable_adapter():
        base_logits = model(input_ids=ids).logits
    assert (model(input_ids=ids).logits - base_logits).abs().max() > 1e-3


def test_bottleneck_fusion_through_the_merge_config(tmp_path, tiny_model_dir, chat_path):
    from safetensors.torch import load_file

    from tasks.packaging.merge import MergeConfig, run_merge

    a, b = (_train(tmp_path / str(lr), tiny_model_dir, chat_path, "bottleneck", learning_rate=lr,
                   bottleneck={"reduction_factor": 8}).adapter_dir for lr in (3e-2, 5e-2))
    cfg = MergeConfig(method="fusion", sources=[a, b], weights=[0.5, 0.5])
    fused = run_merge(cfg, ModelRef.of(str(tiny_model_dir)), tmp_path / "fused")
    down = [v for k, v in load_file(fused / "adapter_model.safetensors").items() if k.endswith("down.weight")]
    assert down and all(t.shape == (16, 64) for t in down)  # widths 8 + 8
    with pytest.raises(ValueError, match="cannot be folded"):
        MergeConfig(method="fusion", sources=[a, b], weights=[0.5, 0.5], fold_into_base=True)


@pytest.mark.parametrize("method,lr,peft_type,trainable,weights", [
    ("prefix", 0.3, "PREFIX_TUNING", 20 * 2 * 2 * 32, {"prompt_embeddings": (20, 128)}),
    ("prompt", 0.3, "PROMPT_TUNING", 20 * 64, {"prompt_embeddings": (20, 64)}),
    ("ptuning", 0.03, "P_TUNING", 20 * 64 + (64 * 128 + 128) + (128 * 128 + 128) + (128 * 64 + 64),
     {"prompt_embeddings": (20, 64)}),
])
def test_prompt_learning(tmp_path, tiny_model_dir, chat_path, method, lr, peft_type, trainable, weights):
    result = _train(tmp_path, tiny_model_dir, chat_path, method, learning_rate=lr)
    assert result.trainable_params == trainable
    config = _config(result)
    assert (config["peft_type"], config["num_virtual_tokens"]) == (peft_type, 20)
    # prefix: 2 layers x (key, value) x 32 kv dims per virtual token; ptuning saves the encoder's output only
    assert _keys(result.adapter_dir / "adapter_model.safetensors") == weights


def test_full_fine_tuning_saves_the_whole_model(tmp_path, tiny_model_dir, chat_path):
    result = _train(tmp_path, tiny_model_dir, chat_path, "full")
    assert (result.trainable_params, result.total_params) == (TINY_TOTAL, TINY_TOTAL)
    assert result.adapter_dir is None and result.model_dir == tmp_path / "full" / "model"
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in result.model_dir.iterdir()}
    assert len(_keys(result.model_dir / "model.safetensors")) == 20  # tied head not stored twice
    before = _keys(tiny_model_dir / "model.safetensors")
    assert _keys(result.model_dir / "model.safetensors") == before


def test_partial_trains_only_the_last_block(tmp_path, tiny_model_dir, chat_path):
    result = _train(tmp_path, tiny_model_dir, chat_path, "partial", learning_rate=1e-2, partial={"last_n_layers": 1})
    block = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128 + 2 * 64  # attention + mlp + 2 norms
    assert result.trainable_params == block and result.total_params == TINY_TOTAL
    assert result.model_dir is not None and result.adapter_dir is None


def test_partial_new_head_is_untied_from_embeddings(tiny_model_dir):
    model = load_base(fast("partial"), ModelRef.of(str(tiny_model_dir)))
    names = freeze_for_partial(model, fast("partial", partial={"last_n_layers": 0, "train_head": True}).partial)
    assert names == ["lm_head.weight"]
    assert not model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)  # starts as a copy
    assert count_parameters(model) == (49152 * 64, TINY_TOTAL + 49152 * 64)


def test_partial_new_head_is_saved_and_reloaded_untied(tmp_path, tiny_model_dir, chat_path):
    from tasks.training.loading import load_trained

    cfg = fast("partial", max_steps=2, partial={"last_n_layers": 0, "train_head": True})
    result = train_sft(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path)
    assert _keys(result.model_dir / "model.safetensors")["lm_head.weight"] == (49152, 64)
    model, _ = load_trained(ModelRef.of(str(tiny_model_dir)), tiny_model_dir, model_dir=result.model_dir)
    base = load_base(cfg, ModelRef.of(str(tiny_model_dir)))
    assert torch.equal(model.model.embed_tokens.weight, base.model.embed_tokens.weight)  # frozen
    assert not torch.equal(model.lm_head.weight, base.lm_head.weight)  # trained, and not re-tied on load


def test_galore_projects_linear_gradients(tmp_path, tiny_model_dir, chat_path):
    from tasks.training.optim import build_optimizer

    cfg = fast("galore", galore={"rank": 8})
    model = apply_method(load_base(cfg, ModelRef.of(str(tiny_model_dir))), cfg)
    optimizer = build_optimizer(model, cfg)
    projected = [g for g in optimizer.param_groups if "rank" in g]
    assert len(projected) == 1 and projected[0]["rank"] == 8
    assert sum(p.numel() for p in projected[0]["params"]) == 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128)
    result = _train(tmp_path, tiny_model_dir, chat_path, "galore", galore={"rank": 8})
    assert result.trainable_params == TINY_TOTAL and result.model_dir is not None


def test_every_method_has_a_path():
    """adapter_for knows every `method` value (the Literal and the dispatcher agree)."""
    from typing import get_args

    from tasks.training.config import Method
    from tasks.training.methods import adapter_for

    for method in get_args(Method):
        adapter = adapter_for(fast(method))
        assert (adapter is None) == (method in {"full", "partial", "galore"})
