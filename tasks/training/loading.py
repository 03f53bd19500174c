"""Load what `train_sft` produced as a model evaluation and serving can call like any causal LM.

Three shapes come out of training:
- a mergeable adapter (LoRA, DoRA, rsLoRA, QLoRA, AdaLoRA, IA3): folded into the base weights;
- a prompt-learning adapter (prefix, prompt, ptuning): cannot be merged, so the PeftModel is kept and wrapped
  so that `model(...).logits` line up with the input ids (prompt/ptuning prepend virtual-token positions);
- a bottleneck adapter: nonlinear, so it stays a PeftModel (served unmerged);
- a full model folder (full, partial, galore): loaded as a plain model.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tasks.model import ModelRef, load_model
from tasks.training.adapters import Adapter
from tasks.training.bottleneck import is_bottleneck
from tasks.vocab import apply_extension


class VirtualTokensLM(torch.nn.Module):
    """A prompt-learning PeftModel whose forward returns logits for the real tokens only.

    PEFT's prompt tuning and p-tuning return `num_virtual_tokens` extra logits in front; perplexity code and
    lm-eval index logits by input position, so those are dropped. `generate` is PEFT's own (it handles them).
    Every other attribute (config, device, generate, tie_weights) is the PeftModel's.
    """

    def __init__(self, peft_model):
        super().__init__()
        self.peft_model = peft_model
        config = peft_model.active_peft_config
        self.n_virtual = 0 if config.peft_type == "PREFIX_TUNING" else config.num_virtual_tokens

    def forward(self, *args, **kwargs):
        out = self.peft_model(*args, **kwargs)
        if self.n_virtual and getattr(out, "logits", None) is not None:
            out.logits = out.logits[:, self.n_virtual:]
        return out

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.peft_model, name)


def load_adapter_for_inference(model, adapter_dir: str | Path):
    """`model` + the adapter in `adapter_dir`: merged when the method allows, else wrapped (VirtualTokensLM), or
    kept as it is (bottleneck adapters: nonlinear, nothing to fold)."""
    peft_model = Adapter.load(model, adapter_dir)
    if peft_model.active_peft_config.is_prompt_learning:
        return VirtualTokensLM(peft_model.eval())
    if is_bottleneck(peft_model):
        return peft_model.eval()
    return peft_model.merge_and_unload()


def load_trained(base: ModelRef, tokenizer_dir: str | Path, adapter_dir: str | Path | None = None,
                 model_dir: str | Path | None = None):
    """(model, tokenizer) from a training output's `adapter_dir` or `model_dir` (exactly one of them)."""
    if (adapter_dir is None) == (model_dir is None):
        raise ValueError("pass exactly one of adapter_dir (adapter methods) and model_dir (full-weight methods)")
    tokenizer = base.load_tokenizer(tokenizer_dir)
    if model_dir is not None:  # vocabulary extension already inside the saved weights
        return load_model(str(model_dir), base.dtype, base.trust_remote_code), tokenizer
    model = base.load_model()
    apply_extension(model, tokenizer, Path(tokenizer_dir))
    return load_adapter_for_inference(model, adapter_dir), tokenizer
