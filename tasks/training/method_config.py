"""The method sections of the training config: one per family of `train.method` (see config.py for which reads
which). Separate from the recipe sections so that each file stays one subject."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.schema import Section

TargetModules = list[str] | Literal["all-linear"]


class LoRAConfig(Section):
    """Low-rank update W + (alpha/r)·BA on the target modules (also DoRA, rsLoRA and QLoRA's adapter)."""

    rank: int = Field(8, gt=0)  # higher = more capacity and memory
    alpha: int = Field(16, gt=0)  # scale = alpha / rank (alpha / sqrt(rank) with rslora)
    dropout: float = Field(0.0, ge=0, lt=1)  # PEFT's default; 0.05 costs ~12% of a CPU LoRA step
    target_modules: TargetModules = ["q_proj", "k_proj", "v_proj", "o_proj"]
    use_rslora: bool = False  # alpha/sqrt(r): keeps the update's scale stable at high rank (method rslora sets it)
    use_dora: bool = False  # magnitude/direction split (method dora sets it)
    loraplus_lr_ratio: float | None = Field(None, ge=1)
    """LoRA+: B matrices learn this many times faster than A (paper: ~16). None = plain AdamW groups."""


class QuantizationConfig(Section):
    """QLoRA's frozen base: 4-bit NormalFloat weights via bitsandbytes, LoRA adapters on top."""

    quant_type: Literal["nf4", "fp4"] = "nf4"  # nf4 matches normally distributed weights better
    double_quant: bool = True  # quantise the quantisation constants too: ~0.4 bit/param saved
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """dtype of the de-quantised matmuls; auto = bfloat16 on CUDA that has it (QLoRA's choice), else float32
    (a CPU without bf16 instructions emulates it: ~1.6x slower here)."""
    paged_optimizer: bool = True  # paged AdamW (optimizer state spills to CPU RAM); used only where CUDA is present


class AdaLoRAConfig(Section):
    """SVD-shaped LoRA whose rank budget shrinks from init_r to target_r (mean) by importance, between tinit and
    (number of training steps) - tfinal."""

    init_r: int = Field(12, gt=0)  # starting rank of every matrix
    target_r: int = Field(8, gt=0)  # mean rank left after pruning
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)  # PEFT's default; 0.05 costs ~12% of a CPU LoRA step
    target_modules: TargetModules = ["q_proj", "k_proj", "v_proj", "o_proj"]
    tinit: int = Field(0, ge=0)  # warm-up steps before any pruning
    tfinal: int = Field(0, ge=0)  # final steps with the budget frozen
    delta_t: int = Field(1, gt=0)  # steps between two budget re-allocations
    beta1: float = Field(0.85, gt=0, lt=1)  # EMA of the sensitivity
    beta2: float = Field(0.85, gt=0, lt=1)  # EMA of its uncertainty
    orth_reg_weight: float = Field(0.5, ge=0)  # keeps P and Q near-orthogonal (an SVD)


class IA3Config(Section):
    """(IA)^3: learned per-channel scaling vectors; the smallest adapter here (~0.01% of the weights)."""

    target_modules: TargetModules = ["k_proj", "v_proj", "down_proj"]
    feedforward_modules: list[str] = ["down_proj"]  # these scale their input rather than their output


class PromptLearningConfig(Section):
    """Virtual tokens learned in front of every sequence (prompt, ptuning) or every layer's keys/values (prefix)."""

    num_virtual_tokens: int = Field(20, gt=0)  # more = more capacity, longer sequences
    init: Literal["random", "text"] = "random"  # prompt tuning: start from the embeddings of init_text
    init_text: str | None = None
    encoder_hidden_size: int = Field(128, gt=0)  # ptuning encoder / prefix projection width
    encoder_type: Literal["MLP", "LSTM"] = "MLP"  # ptuning's prompt encoder
    prefix_projection: bool = False  # prefix: reparameterise through an MLP (more stable, more parameters)

    @model_validator(mode="after")
    def _text_init(self):
        if self.init == "text" and not self.init_text:
            raise ValueError("prompt_learning.init=text needs prompt_learning.init_text")
        return self


class PartialConfig(Section):
    """Full-weight training of a chosen subset; everything else frozen."""

    last_n_layers: int = Field(2, ge=0)  # train the top N transformer blocks (more = closer to full fine-tuning)
    layers: list[int] = []  # or these block indices
    modules: list[str] = []  # or parameters whose name contains any of these (e.g. "norm", "mlp")
    train_embeddings: bool = False
    train_head: bool = False  # a new output head: untied from tied input embeddings (a copy of them), then trained

    @model_validator(mode="after")
    def _something_trains(self):
        if not (self.last_n_layers or self.layers or self.modules or self.train_embeddings or self.train_head):
            raise ValueError("partial: select something to train (last_n_layers, layers, modules, train_head...)")
        return self


class GaLoreConfig(Section):
    """Full fine-tuning whose optimizer state lives in a rank-r projection of each gradient (galore-torch)."""

    rank: int = Field(128, gt=0)  # projection rank: lower = less optimizer memory, noisier updates
    update_proj_gap: int = Field(200, gt=0)  # steps between SVD refreshes of the projection
    scale: float = Field(0.25, gt=0)  # GaLore's alpha on the projected-back update
    proj_type: Literal["std", "reverse_std", "left", "right", "full"] = "std"
    target_modules: list[str] = ["self_attn", "mlp"]  # Linear weights whose name contains these; the rest: AdamW


class BottleneckConfig(Section):
    """Bottleneck adapters (tasks/training/bottleneck.py): h + up(act(down(h))) on a sublayer's output, the up
    projection starting at zero so training starts from the base model exactly."""

    variant: Literal["houlsby", "pfeiffer"] = "houlsby"
    """houlsby: after the attention block and after the FFN (Houlsby et al., 2019); pfeiffer: after the FFN only."""
    reduction_factor: int = Field(16, gt=0)  # bottleneck width = hidden_size / reduction_factor
    non_linearity: Literal["relu", "gelu", "silu", "tanh"] = "relu"
