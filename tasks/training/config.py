"""Training section of the config: the recipe, the method, one nested section per method family, and the
optimisation knobs.

`recipe` is the objective (sft, and the preference and RL recipes as they land); `method` is how the weights
train, independent of the recipe. For the method, each family reads only its own section (unused sections keep their defaults):
LoRA family (lora, dora, rslora, qlora) -> `lora` (+ `qlora` for quantisation), adalora -> `adalora`,
ia3 -> `ia3`, prefix/prompt/ptuning -> `prompt_learning`, partial -> `partial`, galore -> `galore`, full -> none.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.schema import Section

Recipe = Literal["sft", "dpo", "kto", "orpo", "simpo", "reward"]
Method = Literal["lora", "dora", "rslora", "qlora", "adalora", "ia3", "prefix", "prompt", "ptuning",
                 "full", "partial", "galore"]
LORA_FAMILY = frozenset({"lora", "dora", "rslora", "qlora"})
PROMPT_LEARNING = frozenset({"prefix", "prompt", "ptuning"})
FULL_WEIGHT = frozenset({"full", "partial", "galore"})  # no adapter: the whole model is saved
TargetModules = list[str] | Literal["all-linear"]


class LoRAConfig(Section):
    """Low-rank update W + (alpha/r)·BA on the target modules (also DoRA, rsLoRA and QLoRA's adapter)."""

    rank: int = Field(8, gt=0)  # higher = more capacity and memory
    alpha: int = Field(16, gt=0)  # scale = alpha / rank (alpha / sqrt(rank) with rslora)
    dropout: float = Field(0.05, ge=0, lt=1)
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
    dropout: float = Field(0.05, ge=0, lt=1)
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


class DPOConfig(Section):
    """DPO and its variants (TRL's DPOTrainer); see tasks/training/dpo.py for each loss."""

    beta: float = Field(0.1, gt=0)  # higher = stay closer to the reference (IPO: its regulariser τ)
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """robust only: the probability that a preference label is flipped (paper: ~0.1)."""
    rpo_alpha: float | None = Field(None, gt=0)
    """Weight of an SFT term on the chosen reply (RPO): keeps the chosen likelihood from falling with the rejected."""
    precompute_ref_log_probs: bool = False
    """Full-weight methods: reference log-probs computed once before training instead of a frozen copy in memory."""

    @model_validator(mode="after")
    def _smoothing_is_read(self):
        if self.label_smoothing and self.loss_type != "robust":
            raise ValueError(f"dpo.label_smoothing={self.label_smoothing} is read only by loss_type=robust (TRL "
                             f"ignores it with {self.loss_type}): set loss_type: robust for noisy preference labels, "
                             "or label_smoothing: 0")
        return self


class KTOConfig(Section):
    """KTO on unpaired good/bad replies (paired data is unpaired: one good and one bad reply per pair)."""

    beta: float = Field(0.1, gt=0)
    desirable_weight: float = Field(1.0, gt=0)  # raise when good replies are rarer than bad ones
    undesirable_weight: float = Field(1.0, gt=0)


class ORPOConfig(Section):
    """ORPO: SFT on the chosen reply + λ × log-odds-ratio of chosen over rejected; no reference model."""

    beta: float = Field(0.1, gt=0)  # λ in the paper


class SimPOConfig(Section):
    """SimPO: -log σ(β (avg log π(chosen) - avg log π(rejected)) - γ); length-normalised, no reference model."""

    beta: float = Field(2.0, gt=0)  # the paper uses 2.0-2.5
    gamma: float = Field(0.5, ge=0)  # target reward margin


class TrainConfig(Section):
    recipe: Recipe = "sft"
    """The objective: one module under tasks/training/ each (see recipes.py for the data each one needs)."""
    method: Method = "lora"
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    qlora: QuantizationConfig = Field(default_factory=QuantizationConfig)
    adalora: AdaLoRAConfig = Field(default_factory=AdaLoRAConfig)
    ia3: IA3Config = Field(default_factory=IA3Config)
    prompt_learning: PromptLearningConfig = Field(default_factory=PromptLearningConfig)
    partial: PartialConfig = Field(default_factory=PartialConfig)
    galore: GaLoreConfig = Field(default_factory=GaLoreConfig)
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    kto: KTOConfig = Field(default_factory=KTOConfig)
    orpo: ORPOConfig = Field(default_factory=ORPOConfig)
    simpo: SimPOConfig = Field(default_factory=SimPOConfig)

    max_steps: int = Field(60, gt=0)  # stop after this many optimizer steps (whichever of steps/epochs comes first)
    epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    layer_lrs: dict[str, float] = {}
    """Per-parameter learning rates, first matching key wins: `embeddings`, `head`, `norm`, `layers.0-15`,
    `layers.3`, or any substring of a parameter name. Unmatched parameters use learning_rate."""
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # fraction of the total optimizer steps spent ramping up
    weight_decay: float = 0.0  # applied to matrices only, never to norms and biases
    batch_size: int = Field(4, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_grad_norm: float = 1.0  # 0 disables clipping
    max_length: int = Field(512, gt=8)  # tokens per example (per packed row with packing); longer are truncated
    packing: bool = False  # best-fit pack examples into max_length rows, attention kept per example (padding-free)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto = bf16 where the hardware computes it natively (CUDA with bf16, a CPU with AMX), else fp32."""
    gradient_checkpointing: bool = False  # less activation memory, ~30% slower
    logging_steps: int = Field(5, gt=0)
    save_steps: int = Field(20, gt=0)  # checkpoint cadence: a re-run resumes from the last one
    assistant_only_loss: bool = True  # loss on assistant tokens only (prompts are not learned)
    timeout_minutes: int = Field(120, gt=0)

    @model_validator(mode="after")
    def _compatible(self):
        if self.lora.loraplus_lr_ratio is not None:
            if self.method not in LORA_FAMILY:
                raise ValueError(f"lora.loraplus_lr_ratio applies to LoRA methods, not method={self.method}")
            if self.layer_lrs:
                raise ValueError("lora.loraplus_lr_ratio and layer_lrs both set learning rates: choose one")
        if self.packing and self.method in PROMPT_LEARNING:
            raise ValueError(f"packing=true with method={self.method}: virtual tokens would only precede the first "
                             "example of each packed row")
        if self.recipe == "reward" and self.method not in {"lora", "dora", "rslora", "full", "partial"}:
            raise ValueError(f"recipe reward trains a score head with lora, dora, rslora, full or partial, "
                             f"not method={self.method}")
        if self.recipe == "kto" and self.batch_size < 2:
            raise ValueError("recipe kto needs batch_size >= 2: its KL term pairs each reply with another prompt's "
                             "reply in the same batch")
        if self.method == "adalora" and self.adalora.tinit >= self.max_steps - self.adalora.tfinal:
            raise ValueError("adalora: tinit must be < max_steps - tfinal, or no step is left for pruning")
        return self
