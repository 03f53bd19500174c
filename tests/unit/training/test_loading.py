"""What evaluation/packaging load: merged adapters (tasks.training.loading.load_trained), wrapped prompt learning, full models."""
import pytest
import torch

from tasks.model import ModelRef, load_model
from tasks.training.adapters import PrefixTuning, PromptTuning, PTuning
from tasks.training.config import PromptLearningConfig
from tasks.training.loading import VirtualTokensLM, load_trained
from tests.helpers import random_lora


@pytest.fixture()
def ids():
    return {"input_ids": torch.tensor([[1, 20, 300, 4000, 12, 7]]), "attention_mask": torch.ones(1, 6, dtype=torch.long)}


def test_lora_folder_loads_through_load_trained(tiny_model_dir, tmp_path, ids):
    adapter, model = random_lora(tiny_model_dir)
    expected = model.eval()(**ids).logits
    adapter.save(tmp_path / "a")
    merged, _ = load_trained(ModelRef.of(str(tiny_model_dir)), str(tiny_model_dir), adapter_dir=tmp_path / "a")
    assert not hasattr(merged, "peft_config")  # a plain model
    torch.testing.assert_close(merged(**ids).logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls,n_virtual", [(PromptTuning, 4), (PTuning, 4), (PrefixTuning, 0)])
def test_prompt_learning_logits_line_up_with_the_input(tiny_model_dir, tmp_path, ids, cls, n_virtual):
    adapter = cls(PromptLearningConfig(num_virtual_tokens=4, encoder_hidden_size=16))
    peft_model = adapter.apply(load_model(str(tiny_model_dir))).eval()
    raw = peft_model(**ids).logits
    assert raw.shape[1] == 6 + n_virtual  # PEFT's own output for prompt/ptuning includes the virtual positions
    adapter.save(tmp_path / "p")
    model, tokenizer = load_trained(ModelRef.of(str(tiny_model_dir)), tiny_model_dir, adapter_dir=tmp_path / "p")
    assert isinstance(model, VirtualTokensLM) and model.n_virtual == n_virtual
    logits = model(**ids).logits
    assert logits.shape == (1, 6, 49152)
    torch.testing.assert_close(logits, raw[:, n_virtual:])
    out = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == 6 + 3 and torch.equal(out[:, :6], ids["input_ids"])
    assert model.config.vocab_size == 49152 and model.device.type == "cpu"


def test_full_model_folder_loads_as_a_plain_model(tiny_model_dir, tmp_path, ids):
    model = load_model(str(tiny_model_dir))
    with torch.no_grad():
        model.model.norm.weight.mul_(2)
    model.save_pretrained(tmp_path / "m")
    loaded, _ = load_trained(ModelRef.of(str(tiny_model_dir)), tiny_model_dir, model_dir=tmp_path / "m")
    torch.testing.assert_close(loaded(**ids).logits, model(**ids).logits)
    with pytest.raises(ValueError, match="exactly one"):
        load_trained(ModelRef.of(str(tiny_model_dir)), tiny_model_dir)
