"""Python API over PEFT: one small class per adapter method, each turning a typed config section into a PEFT config.

    adapter = LoRAAdapter(LoRAConfig(rank=8, alpha=16, dropout=0.1, target_modules=["q_proj", "v_proj"]))
    model = adapter.apply(base)          # PeftModel; only the adapter trains
    adapter.trainable_parameters()       # {name: numel} of what trains
    adapter.save(path)                   # adapter_config.json + adapter_model.safetensors
    model = Adapter.load(base, path)     # any of them, back onto a fresh base

The classes hold no training logic: PEFT does the work; these only name the knobs once.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from peft import (AdaLoraConfig, IA3Config as PeftIA3Config, LoraConfig, PeftConfig, PeftModel, PrefixTuningConfig,
                  PromptEncoderConfig, PromptTuningConfig, get_peft_model, prepare_model_for_kbit_training)

from tasks.model import ModelRef, torch_dtype
from tasks.training import bottleneck
from tasks.training.method_config import (AdaLoRAConfig, BottleneckConfig, IA3Config, LoRAConfig, PromptLearningConfig,
                                          QuantizationConfig)


def _targets(target_modules):
    return target_modules if isinstance(target_modules, str) else list(target_modules)


class Adapter:
    """Base: `apply` wraps a model with `peft_config()`, `save`/`load` go through PEFT's safetensors format."""

    supports_new_tokens = False  # PEFT's trainable_token_indices exists for LoRA-style configs only

    def __init__(self, config):
        self.config = config
        self.model: PeftModel | None = None

    def peft_config(self) -> PeftConfig:
        raise NotImplementedError

    def apply(self, base, trainable_token_ids: list[int] | None = None) -> PeftModel:
        """Wrap `base`; rows of newly added tokens stay trainable where the method supports it."""
        config = self.peft_config()
        if trainable_token_ids and self.supports_new_tokens:
            config.trainable_token_indices = {"embed_tokens": list(trainable_token_ids)}
        self.model = get_peft_model(base, config)
        return self.model

    def trainable_parameters(self) -> dict[str, int]:
        """{parameter name: element count} of everything that trains."""
        if self.model is None:
            raise RuntimeError("apply() the adapter first")
        return {n: p.numel() for n, p in self.model.named_parameters() if p.requires_grad}

    def save(self, path: str | Path) -> Path:
        if self.model is None:
            raise RuntimeError("apply() the adapter first")
        self.model.save_pretrained(path, safe_serialization=True)
        return Path(path)

    @staticmethod
    def load(base, path: str | Path, trainable: bool = False) -> PeftModel:
        """Any saved adapter back onto `base` (PEFT reads the method from adapter_config.json)."""
        with warnings.catch_warnings():  # AdaLoRA: PEFT checks its rank_pattern as LoRA's and warns; the load is exact
            warnings.filterwarnings("ignore", "The following rank_pattern keys did not match", RuntimeWarning)
            return PeftModel.from_pretrained(base, str(path), is_trainable=trainable)


class LoRAAdapter(Adapter):
    supports_new_tokens = True
    use_dora = False

    def __init__(self, config: LoRAConfig):
        super().__init__(config)

    def peft_config(self) -> LoraConfig:
        c = self.config
        return LoraConfig(r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=_targets(c.target_modules),
                          use_rslora=c.use_rslora, use_dora=c.use_dora or self.use_dora, bias="none",
                          task_type="CAUSAL_LM")


class DoRAAdapter(LoRAAdapter):
    """LoRA on the direction of each weight plus a trainable per-column magnitude (`lora_magnitude_vector`)."""

    use_dora = True


class QLoRAAdapter(LoRAAdapter):
    """LoRA on a 4-bit NF4 base: load the base with `load_base` (or any 4-bit load), then `apply`."""

    def __init__(self, config: LoRAConfig, quantization: QuantizationConfig | None = None,
                 gradient_checkpointing: bool = False):
        super().__init__(config)
        self.quantization = quantization or QuantizationConfig()
        self.gradient_checkpointing = gradient_checkpointing

    def quantization_config(self):
        from transformers import BitsAndBytesConfig

        q = self.quantization
        compute = q.compute_dtype
        if compute == "auto":
            compute = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                                  bnb_4bit_use_double_quant=q.double_quant,
                                  bnb_4bit_compute_dtype=torch_dtype(compute))

    def load_base(self, model: ModelRef):
        """`model` with its Linear weights in 4 bits (norms and embeddings stay float32)."""
        return model.model_copy(update={"dtype": "float32"}).load_model(quantization_config=self.quantization_config())

    def apply(self, base, trainable_token_ids: list[int] | None = None) -> PeftModel:
        if not getattr(base, "is_loaded_in_4bit", False):
            raise ValueError("QLoRA needs a 4-bit base: load it with QLoRAAdapter.load_base(path)")
        # fp32 norms/embeddings and input grads so the frozen 4-bit stack still back-propagates into the adapters
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=self.gradient_checkpointing)
        return super().apply(base, trainable_token_ids)


class AdaLoRAAdapter(Adapter):
    """Needs `update_and_allocate(step)` after every optimizer step: see callbacks.AdaLoRABudget."""

    supports_new_tokens = True

    def __init__(self, config: AdaLoRAConfig, total_step: int):
        super().__init__(config)
        self.total_step = total_step

    def peft_config(self) -> AdaLoraConfig:
        c = self.config
        return AdaLoraConfig(init_r=c.init_r, target_r=c.target_r, lora_alpha=c.alpha, lora_dropout=c.dropout,
                             target_modules=_targets(c.target_modules), tinit=c.tinit, tfinal=c.tfinal,
                             deltaT=c.delta_t, beta1=c.beta1, beta2=c.beta2, orth_reg_weight=c.orth_reg_weight,
                             total_step=self.total_step, task_type="CAUSAL_LM")


class IA3Adapter(Adapter):
    def __init__(self, config: IA3Config):
        super().__init__(config)

    def peft_config(self) -> PeftIA3Config:
        c = self.config
        return PeftIA3Config(target_modules=_targets(c.target_modules), feedforward_modules=list(c.feedforward_modules),
                             task_type="CAUSAL_LM")


class PrefixTuning(Adapter):
    """Learned key/value prefixes in every layer; nothing is merged into the weights."""

    def __init__(self, config: PromptLearningConfig):
        super().__init__(config)

    def peft_config(self) -> PrefixTuningConfig:
        c = self.config
        return PrefixTuningConfig(num_virtual_tokens=c.num_virtual_tokens, prefix_projection=c.prefix_projection,
                                  encoder_hidden_size=c.encoder_hidden_size, task_type="CAUSAL_LM")


class PromptTuning(Adapter):
    """Learned input embeddings in front of the sequence; `init: text` starts them from a phrase's embeddings."""

    def __init__(self, config: PromptLearningConfig, tokenizer_dir: str | Path | None = None):
        super().__init__(config)
        self.tokenizer_dir = tokenizer_dir

    def peft_config(self) -> PromptTuningConfig:
        c = self.config
        if c.init == "text":
            if self.tokenizer_dir is None:
                raise ValueError("prompt tuning with init=text needs the tokenizer folder")
            return PromptTuningConfig(num_virtual_tokens=c.num_virtual_tokens, prompt_tuning_init="TEXT",
                                      prompt_tuning_init_text=c.init_text,
                                      tokenizer_name_or_path=str(self.tokenizer_dir), task_type="CAUSAL_LM")
        return PromptTuningConfig(num_virtual_tokens=c.num_virtual_tokens, prompt_tuning_init="RANDOM",
                                  task_type="CAUSAL_LM")


class PTuning(Adapter):
    """Virtual tokens produced by a small trained encoder (MLP or LSTM) rather than learned directly."""

    def __init__(self, config: PromptLearningConfig):
        super().__init__(config)

    def peft_config(self) -> PromptEncoderConfig:
        c = self.config
        return PromptEncoderConfig(num_virtual_tokens=c.num_virtual_tokens, encoder_hidden_size=c.encoder_hidden_size,
                                   encoder_reparameterization_type=c.encoder_type, task_type="CAUSAL_LM")


class BottleneckAdapter(Adapter):
    """Houlsby/Pfeiffer bottleneck adapters (ours, registered with PEFT: see bottleneck.py); served unmerged."""

    def __init__(self, config: BottleneckConfig):
        super().__init__(config)

    def peft_config(self):
        return bottleneck.peft_config(self.config)


def orthogonal_penalty(model) -> torch.Tensor:
    """AdaLoRA's regulariser: mean ||PPᵀ - I||_F over its P (lora_A) and Q (lora_B) matrices.

    PEFT adds it inside AdaLoraModel.forward to `outputs.loss`, which TRL's fused loss never reads; this restores it.
    """
    terms = []
    for name, p in model.named_parameters():
        if p.requires_grad and ("lora_A" in name or "lora_B" in name):
            cov = p @ p.T if "lora_A" in name else p.T @ p
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(*cov.shape, dtype=cov.dtype, device=cov.device)))
    return torch.stack(terms).mean()


def adalora_loss(model, orth_reg_weight: float):
    """`compute_loss_func` for the trainer: causal-LM cross-entropy + AdaLoRA's orthogonality penalty."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    def loss_func(outputs, labels, num_items_in_batch=None):
        ce = ForCausalLMLoss(outputs.logits, labels, vocab_size=outputs.logits.size(-1),
                             num_items_in_batch=num_items_in_batch)
        return ce + orth_reg_weight * orthogonal_penalty(model)
    return loss_func
