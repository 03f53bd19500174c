import pytest
from safetensors import safe_open

from tasks.model import EMBEDDED, embedded_model_dir, load_model, resolve


def test_embedded_model_is_converted_to_safetensors():
    folder = embedded_model_dir()
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "model.embed_tokens.weight" in keys
    assert len([k for k in keys if k.endswith("q_proj.weight")]) == 30  # SmolLM2-135M has 30 layers
    assert (folder / "tokenizer.json").exists()


def test_resolve_maps_only_the_embedded_id(tmp_path):
    assert resolve(EMBEDDED) == str(embedded_model_dir())
    assert resolve("HuggingFaceTB/SmolLM2-360M") == "HuggingFaceTB/SmolLM2-360M"
    assert resolve(str(tmp_path)) == str(tmp_path)


def test_load_model_rejects_unknown_dtype(tiny_model_dir):
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(str(tiny_model_dir), dtype="float8")


def test_load_model_reads_local_folder(tiny_model_dir):
    model = load_model(str(tiny_model_dir))
    assert model.config.num_hidden_layers == 2
