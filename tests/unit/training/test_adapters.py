"""The Python adapter API: apply -> trainable_parameters -> save -> Adapter.load round-trips on the tiny Llama."""
import json

import pytest
import torch

from tasks.model import ModelRef
from tasks.model import load_model
from tasks.training.adapters import (AdaLoRAAdapter, Adapter, DoRAAdapter, IA3Adapter, LoRAAdapter, PrefixTuning,
                                     PromptTuning, PTuning, QLoRAAdapter, orthogonal_penalty)
from tasks.training.config import AdaLoRAConfig, IA3Config, LoRAConfig, PromptLearningConfig


@pytest.fixture()
def base(tiny_model_dir):
    torch.manual_seed(0)
    return load_model(str(tiny_model_dir))


@pytest.fixture()
def batch():
    return {"input_ids": torch.tensor([[1, 20, 300, 4000, 12, 7]]), "attention_mask": torch.ones(1, 6, dtype=torch.long)}


def test_lora_adapter_round_trip(base, tiny_model_dir, tmp_path, batch):
    adapter = LoRAAdapter(LoRAConfig(rank=8, alpha=16, dropout=0.1, target_modules=["q_proj", "v_proj"]))
    model = adapter.apply(base)
    trainable = adapter.trainable_parameters()
    assert sum(trainable.values()) == 2 * 8 * ((64 + 64) + (64 + 32))
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # B starts at zero: make the adapter visible in the output
    model.eval()
    expected = model(**batch).logits
    adapter.save(tmp_path / "a")
    assert {p.name for p in (tmp_path / "a").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    loaded = Adapter.load(load_model(str(tiny_model_dir)), tmp_path / "a").eval()
    torch.testing.assert_close(loaded(**batch).logits, expected)


def test_dora_adds_magnitude_vectors(base):
    adapter = DoRAAdapter(LoRAConfig(rank=4, target_modules=["q_proj"]))
    adapter.apply(base)
    magnitudes = {n: c for n, c in adapter.trainable_parameters().items() if "lora_magnitude_vector" in n}
    assert len(magnitudes) == 2 and set(magnitudes.values()) == {64}
    assert adapter.peft_config().use_dora


def test_trainable_token_rows_only_where_peft_supports_them(base, tiny_model_dir):
    lora = LoRAAdapter(LoRAConfig(rank=4, target_modules=["q_proj"]))
    lora.apply(base, trainable_token_ids=[5, 6])
    assert any("token_adapter" in n for n in lora.trainable_parameters())
    ia3 = IA3Adapter(IA3Config())
    ia3.apply(load_model(str(tiny_model_dir)), trainable_token_ids=[5, 6])
    assert not any("token_adapter" in n for n in ia3.trainable_parameters())


def test_qlora_adapter_needs_a_4bit_base(base, tiny_model_dir):
    adapter = QLoRAAdapter(LoRAConfig(rank=4, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="4-bit"):
        adapter.apply(base)
    quantised = adapter.load_base(ModelRef.of(str(tiny_model_dir)))
    assert quantised.get_memory_footprint() < base.get_memory_footprint()
    adapter.apply(quantised)
    assert sum(adapter.trainable_parameters().values()) == 2 * 4 * (64 + 64)


def test_adalora_adapter_and_its_penalty(base):
    adapter = AdaLoRAAdapter(AdaLoRAConfig(init_r=4, target_modules=["q_proj"]), total_step=10)
    model = adapter.apply(base)
    assert adapter.peft_config().total_step == 10
    assert orthogonal_penalty(model).item() > 0  # random P, Q are not orthogonal


def test_prompt_tuning_text_init_uses_the_phrase_embeddings(base, tiny_model_dir):
    text = "Answer as Stratovault support."
    adapter = PromptTuning(PromptLearningConfig(num_virtual_tokens=6, init="text", init_text=text), tiny_model_dir)
    model = adapter.apply(base)
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_model_dir)(text, add_special_tokens=False)["input_ids"]
    ids = (ids * 6)[:6]
    prompt = model.prompt_encoder["default"].embedding.weight
    torch.testing.assert_close(prompt, base.get_input_embeddings().weight[ids])
    with pytest.raises(ValueError, match="tokenizer"):
        PromptTuning(PromptLearningConfig(init="text", init_text=text)).peft_config()


@pytest.mark.parametrize("cls,count", [(PrefixTuning, 5 * 2 * 2 * 32), (PTuning, None)])
def test_other_prompt_learning_adapters(base, tmp_path, cls, count):
    adapter = cls(PromptLearningConfig(num_virtual_tokens=5, encoder_hidden_size=16))
    adapter.apply(base)
    total = sum(adapter.trainable_parameters().values())
    assert total == (count or 5 * 64 + (64 * 16 + 16) + (16 * 16 + 16) + (16 * 64 + 64))
    adapter.save(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert config["num_virtual_tokens"] == 5


def test_api_errors_before_apply():
    with pytest.raises(RuntimeError, match="apply"):
        LoRAAdapter(LoRAConfig()).trainable_parameters()


def test_qlora_compute_dtype_follows_the_hardware():
    from tasks.training.config import QuantizationConfig

    auto = QLoRAAdapter(LoRAConfig()).quantization_config()
    assert auto.bnb_4bit_compute_dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    assert (auto.bnb_4bit_quant_type, auto.bnb_4bit_use_double_quant) == ("nf4", True)
    forced = QLoRAAdapter(LoRAConfig(), QuantizationConfig(compute_dtype="bfloat16")).quantization_config()
    assert forced.bnb_4bit_compute_dtype == torch.bfloat16
