"""Training section of the config: the recipe, the method, one nested section per method family, and the
optimisation knobs.

`recipe` is the objective (sft, and the preference and RL recipes as they land); `method` is how the weights
train, independent of the recipe. For the method, each family reads only its own section (unused sections keep their defaults):
LoRA family (lora, dora, rslora, qlora) -> `lora` (+ `qlora` for quantisation), adalora -> `adalora`,
ia3 -> `ia3`, prefix/prompt/ptuning -> `prompt_learning`, partial -> `partial`, galore -> `galore`,
bottleneck -> `bottleneck`, full -> none. The method sections live in method_config.py; the recipe sections here.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.schema import Section
from tasks.training.method_config import (AdaLoRAConfig, BottleneckConfig, GaLoreConfig, IA3Config, LoRAConfig,
                                          PartialConfig, PromptLearningConfig, QuantizationConfig)

Recipe = Literal["sft", "dpo", "kto", "orpo", "simpo", "reward", "ppo", "grpo", "rloo", "distill", "classify",
                 "fewshot"]
ONLINE_RL = frozenset({"ppo", "grpo", "rloo"})  # sample from the policy, score with a reward, KL to the reference
Method = Literal["lora", "dora", "rslora", "qlora", "adalora", "ia3", "prefix", "prompt", "ptuning",
                 "full", "partial", "galore", "bottleneck"]
LORA_FAMILY = frozenset({"lora", "dora", "rslora", "qlora"})
PROMPT_LEARNING = frozenset({"prefix", "prompt", "ptuning"})
FULL_WEIGHT = frozenset({"full", "partial", "galore"})  # no adapter: the whole model is saved
RL_METHODS = LORA_FAMILY | {"ia3", "full", "partial"}  # token positions unchanged (no virtual tokens), plain AdamW
LAUNCHABLE = frozenset({"sft", "dpo", "kto", "orpo", "simpo", "reward", "grpo", "rloo", "distill", "classify"})
"""Recipes run by transformers' Trainer (TRL's or ours), which `accelerate launch` distributes; ppo and fewshot
have hand-written loops."""
TASK_HEAD_METHODS = LORA_FAMILY - {"qlora"} | {"full", "partial"}  # classify/fewshot: pooled states, no virtual tokens


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


class RLConfig(Section):
    """What the online RL recipes (ppo, grpo, rloo) share: the reward, the sampling, the KL monitor.

    Rollouts sample from the full distribution (no top-k, no top-p: both bias the KL estimate, the source of
    reported "negative KL").
    """

    reward_model: str | None = None
    """A reward model folder (sequence classification, one logit), its package, an MLflow model URI, or in a chain
    `stage:<name>` (the reward stage's package)."""
    reward_function: str | None = None
    """Or a Python reward `module:function`, called as f(prompts, completions) -> list[float]; prompts are chat
    turns, completions plain strings."""
    max_new_tokens: int = Field(48, gt=0)  # longest sampled response
    min_new_tokens: int = Field(0, ge=0)  # EOS is suppressed before this many tokens
    temperature: float = Field(1.0, gt=0)
    missing_eos_penalty: float | None = Field(1.0, ge=0)
    """Subtracted from the reward of a response that hit max_new_tokens without ending (None: no penalty)."""
    kl_threshold: float | None = Field(1.0, gt=0)
    """KL monitor: warn (a log line and a run tag) when the policy's KL to the reference passes this (nats/token)."""
    stop_on_kl: bool = False  # and stop training there

    @model_validator(mode="after")
    def _one_reward(self):
        if (self.reward_model is None) == (self.reward_function is None):
            raise ValueError("train.rl: set exactly one of reward_model (a reward model folder, package, models:/ URI "
                             "or stage:<name>) and reward_function (module:function)")
        if self.reward_function is not None and ":" not in self.reward_function:
            raise ValueError(f"train.rl.reward_function={self.reward_function!r}: expected module:function")
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError("train.rl.min_new_tokens must be <= max_new_tokens")
        return self


class PPOConfig(Section):
    """PPO's knobs (tasks/training/ppo.py), named and defaulted as in the design documents' PPOConfig.

    PPO clips gradients by its own `max_grad_norm` (0.5), not train.max_grad_norm; one step = one rollout batch of
    train.batch_size prompts, optimised for n_epochs over num_mini_batches mini-batches.
    """

    kl_coef: float = Field(0.1, ge=0)  # β of the per-token KL penalty (the initial value when adaptive)
    kl_estimator: Literal["k1", "k3"] = "k1"  # k1 = log π/π_ref; k3 = (r - 1) - log r, r = π_ref/π (never negative)
    adaptive_kl: bool = False  # Ziegler et al.: steer β so that the KL tracks target_kl
    target_kl: float = Field(6.0, gt=0)  # nats per response (summed over its tokens), as in the paper
    horizon: int = Field(10000, gt=0)  # the adaptive controller's time constant, in samples
    gamma: float = Field(1.0, ge=0, le=1)  # discount
    lam: float = Field(0.95, ge=0, le=1)  # GAE λ
    clip_range: float = Field(0.2, gt=0)  # policy ratio clip ε
    clip_range_vf: float | None = Field(0.2, gt=0)  # value clip around the rollout's values (None: unclipped)
    vf_coef: float = Field(0.5, ge=0)
    entropy_coef: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(0.5, gt=0)
    n_epochs: int = Field(4, gt=0)  # passes over each rollout batch
    num_mini_batches: int = Field(1, gt=0)  # optimizer steps per epoch
    critic: Literal["shared", "separate"] = "shared"
    """shared: the value head reads the policy's last hidden state; separate: a critic model of its own (a copy of
    the base with the same method, or critic_model) under the value head."""
    critic_model: str | None = None  # separate critic's starting weights (e.g. the reward model's folder)


class GroupRLConfig(Section):
    """GRPO and RLOO (TRL's trainers): a group of samples per prompt; each sample's advantage is its reward against
    the group's (GRPO: standardised by the group mean and std; RLOO: minus the mean of the others)."""

    num_generations: int = Field(4, ge=2)  # samples per prompt
    beta: float = Field(0.05, ge=0)  # KL coefficient to the reference
    epsilon: float = Field(0.2, gt=0)  # ratio clip
    num_iterations: int = Field(1, gt=0)  # optimisation passes per generated batch (μ)


class DistillationConfig(Section):
    """Knowledge distillation (tasks/training/distill.py): loss = alpha * CE(hard labels) + (1 - alpha) * T^2 *
    D(teacher || student) at temperature T, on the assistant tokens."""

    temperature: float = Field(4.0, gt=0)  # softens both distributions: small logit gaps carry information
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the hard-label cross-entropy, 1 - alpha on the teacher term (offline; on_policy is TRL's divergence
    alone: sampled replies have no hard labels)."""
    loss_type: Literal["kl_div", "forward_kl", "reverse_kl", "jsd"] = "kl_div"
    """kl_div = forward_kl = KL(teacher || student) (Hinton et al.); reverse_kl = KL(student || teacher), mode
    seeking; jsd = GKD's generalised Jensen-Shannon divergence with `beta`."""
    beta: float = Field(0.5, gt=0, lt=1)  # jsd only: 0 -> forward KL, 1 -> reverse KL (GKD's beta)
    mode: Literal["offline", "on_policy"] = "offline"
    """offline: the teacher's logits on the training replies; on_policy: replies sampled from the student, scored by
    the teacher (TRL's DistillationTrainer)."""
    teacher: str | None = None
    """None = the configured model; or a package folder, MLflow model URI or `stage:<name>` (a tuned teacher)."""
    student: str = "every_other_layer"
    """`every_other_layer`: the teacher with every second transformer block dropped (weights copied, same tokenizer);
    or any model reference (HF id, folder) with the teacher's vocabulary."""
    compare_sft: bool = True  # also train the same student by plain SFT, same data and steps, for the report
    max_new_tokens: int = Field(64, gt=0)  # on_policy: longest sampled reply


# Continual strategy -> the recipes it works with (naive: all). EWC needs a causal LM trained through `make_trainer`;
# replay and LwF need chat rows and token-level SFT.
CONTINUAL_RECIPES = {
    "ewc": frozenset({"sft", "dpo", "kto", "orpo", "simpo", "grpo", "rloo"}),
    "replay": frozenset({"sft"}),
    "lwf": frozenset({"sft"}),
}


def check_continual(recipe: str, strategy: str) -> None:
    """Raise when `train.recipe` cannot run `train.continual.strategy`. Here, not in continual.py: validating a
    config must not import torch."""
    if strategy != "naive" and recipe not in CONTINUAL_RECIPES[strategy]:
        raise ValueError(f"train.continual.strategy={strategy} is not supported by train.recipe={recipe}; "
                         f"{strategy} works with: {', '.join(sorted(CONTINUAL_RECIPES[strategy]))}")


class ContinualConfig(Section):
    """Continual learning (tasks/training/continual.py): train on a new task without forgetting the previous one."""

    strategy: Literal["naive", "ewc", "replay", "lwf"] = "naive"
    """naive: no mitigation; ewc: lambda * sum F (theta - theta_old)^2 on the trainable weights; replay: mix in
    rows of the previous task; lwf: distil the starting model's outputs on the new data."""
    previous_data: str | None = None
    """The previous task's prepared rows (a JSONL file, e.g. an earlier run's data/train.jsonl), or in a chain
    `stage:<name>` (that stage's prepared train split). ewc and replay need it."""
    ewc_lambda: float = Field(100.0, ge=0)
    fisher_samples: int = Field(64, gt=0)  # previous-task rows the diagonal Fisher is estimated on
    replay_fraction: float = Field(0.25, gt=0, lt=1)  # share of each epoch's rows drawn from the previous task
    lwf_alpha: float = Field(1.0, ge=0)  # weight of the distillation term
    lwf_temperature: float = Field(2.0, gt=0)
    previous_accuracy: bool = False
    """The previous task's replies are labels (e.g. a topic): evaluation also scores exact match of generated replies
    on its held-out rows, before and after."""

    @model_validator(mode="after")
    def _needs_previous(self):
        if self.strategy in ("ewc", "replay") and not self.previous_data:
            raise ValueError(f"train.continual.strategy={self.strategy} needs train.continual.previous_data (the "
                             "previous task's rows, or stage:<name> in a chain)")
        return self


class TransferConfig(Section):
    """Transfer to a classification task (tasks/training/classify.py): a new head on the backbone's pooled hidden
    state (the last non-padding token, as a causal LM reads the whole text there)."""

    freeze_encoder: bool = True  # only the head trains
    new_head: bool = True  # a freshly initialised head (False: keep a head the checkpoint already has)
    layer_wise_lr: dict[Literal["encoder", "decoder", "head"], float] = {}
    """With freeze_encoder=false: `encoder` = embeddings + the lower half of the blocks, `decoder` = the upper half +
    the final norm, `head` = the classifier; unset groups use train.learning_rate."""


class FewShotConfig(Section):
    """Episodic prototypical training (tasks/training/fewshot.py): N-way K-shot episodes from the training classes;
    each query is classified by its nearest class prototype (mean embedding of the class's K support examples)."""

    n_ways: int = Field(5, ge=2)
    n_shots: int = Field(5, gt=0)
    n_queries: int = Field(15, gt=0)  # per class
    meta_batch_size: int = Field(4, gt=0)  # episodes per optimizer step
    held_out_classes: int = Field(8, gt=0)  # classes kept out of meta-training, for the evaluation
    held_out: list[str] = []  # or exactly these classes (then held_out_classes is not read)
    eval_episodes: int = Field(100, gt=0)
    pooling: Literal["mean", "last"] = "mean"  # over the non-padding tokens of the last hidden state

    @model_validator(mode="after")
    def _enough_held_out(self):
        if len(self.held_out or range(self.held_out_classes)) < self.n_ways:
            raise ValueError(f"fewshot.held_out_classes ({self.held_out_classes}) must be >= n_ways "
                             f"({self.n_ways}): evaluation episodes draw n_ways held-out classes")
        return self


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
    rl: RLConfig | None = None  # required by ppo, grpo and rloo
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    grpo: GroupRLConfig = Field(default_factory=GroupRLConfig)
    rloo: GroupRLConfig = Field(default_factory=GroupRLConfig)
    bottleneck: BottleneckConfig = Field(default_factory=BottleneckConfig)
    distill: DistillationConfig = Field(default_factory=DistillationConfig)
    continual: ContinualConfig = Field(default_factory=ContinualConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    fewshot: FewShotConfig = Field(default_factory=FewShotConfig)

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
    packing: bool | None = None
    """Best-fit pack whole examples into max_length rows, attention kept per example (padding-free; same loss as
    padded batches, ~1.4x the tokens/s on CPU). None = on, except for prompt learning (its virtual tokens are per
    sequence). SFT-style recipes only; the preference trainers pad."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto = bf16 where the hardware computes it natively (CUDA with bf16, a CPU with AMX), else fp32."""
    gradient_checkpointing: bool = False  # less activation memory, ~30% slower
    logging_steps: int = Field(5, gt=0)
    save_steps: int = Field(20, gt=0)  # checkpoint cadence: a re-run resumes from the last one
    eval_steps: int = Field(10, gt=0)
    """Validation loss (`train/eval_loss`) every this many optimizer steps and at the last one, for a recipe given
    the validation split (SFT with `eval_path`)."""
    eval_max_rows: int = Field(64, gt=0)  # the first this many validation rows: keeps each evaluation cheap
    assistant_only_loss: bool = True  # loss on assistant tokens only (prompts are not learned)
    timeout_minutes: int = Field(120, gt=0)
    distributed: str | None = None
    """An accelerate config, by name under conf/accelerate/ (ddp, fsdp, deepspeed_zero2, deepspeed_zero3) or path:
    the recipe runs under `accelerate launch` across processes (launch.py). batch_size is then per process."""
    num_processes: int | None = Field(None, gt=0)  # overrides the accelerate config's num_processes (e.g. GPU count)

    @model_validator(mode="after")
    def _compatible(self):
        if self.lora.loraplus_lr_ratio is not None:
            if self.method not in LORA_FAMILY:
                raise ValueError(f"lora.loraplus_lr_ratio applies to LoRA methods, not method={self.method}")
            if self.layer_lrs:
                raise ValueError("lora.loraplus_lr_ratio and layer_lrs both set learning rates: choose one")
        if self.distributed and self.recipe not in LAUNCHABLE:
            raise ValueError(f"train.distributed runs recipes built on transformers' Trainer "
                             f"({', '.join(sorted(LAUNCHABLE))}); recipe {self.recipe} has its own loop: unset "
                             "train.distributed")
        if self.num_processes and not self.distributed:
            raise ValueError("train.num_processes is read only with train.distributed (an accelerate config)")
        if self.packing is None:
            self.packing = self.method not in PROMPT_LEARNING
        if self.packing and self.method in PROMPT_LEARNING:
            raise ValueError(f"packing=true with method={self.method}: virtual tokens would only precede the first "
                             "example of each packed row")
        if self.recipe == "reward" and self.method not in {"lora", "dora", "rslora", "full", "partial"}:
            raise ValueError(f"recipe reward trains a score head with lora, dora, rslora, full or partial, "
                             f"not method={self.method}")
        if self.recipe in ONLINE_RL:
            if self.rl is None:
                raise ValueError(f"recipe {self.recipe} needs train.rl with a reward_model or a reward_function")
            if self.method not in RL_METHODS:
                raise ValueError(f"recipe {self.recipe} trains with {', '.join(sorted(RL_METHODS))}, not "
                                 f"method={self.method}")
            group = {"grpo": self.grpo, "rloo": self.rloo}.get(self.recipe)
            if group is not None and self.batch_size % group.num_generations:
                raise ValueError(f"recipe {self.recipe}: batch_size ({self.batch_size}) must be a multiple of "
                                 f"{self.recipe}.num_generations ({group.num_generations}): each batch holds whole "
                                 "groups of samples")
            if self.recipe == "ppo" and self.batch_size % self.ppo.num_mini_batches:
                raise ValueError(f"ppo.num_mini_batches ({self.ppo.num_mini_batches}) must divide batch_size "
                                 f"({self.batch_size})")
        if self.recipe == "distill" and self.method not in FULL_WEIGHT:
            raise ValueError(f"recipe distill trains the student whole (method full, partial or galore), not "
                             f"method={self.method}: the student is a new model and ships as one")
        if self.recipe in ("classify", "fewshot") and self.method not in TASK_HEAD_METHODS:
            raise ValueError(f"recipe {self.recipe} trains with {', '.join(sorted(TASK_HEAD_METHODS))}, not "
                             f"method={self.method}")
        check_continual(self.recipe, self.continual.strategy)
        if self.recipe == "kto" and self.batch_size < 2:
            raise ValueError("recipe kto needs batch_size >= 2: its KL term pairs each reply with another prompt's "
                             "reply in the same batch")
        if self.method == "adalora" and self.adalora.tinit >= self.max_steps - self.adalora.tfinal:
            raise ValueError("adalora: tinit must be < max_steps - tfinal, or no step is left for pruning")
        return self
