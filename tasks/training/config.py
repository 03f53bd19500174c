"""Training section of the config: the method and the optimisation knobs shared by every method."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.schema import Section


class LoRAConfig(Section):
    rank: int = Field(8, gt=0)  # higher = more capacity and memory
    alpha: int = Field(16, gt=0)  # scale = alpha / rank (alpha / sqrt(rank) with rslora)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    use_rslora: bool = False


class TrainConfig(Section):
    method: Literal["lora"] = "lora"
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    max_steps: int = Field(60, gt=0)  # stop after this many optimizer steps (whichever of steps/epochs comes first)
    epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = 0.0
    batch_size: int = Field(4, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_grad_norm: float = 1.0
    max_length: int = Field(512, gt=8)  # tokens per example; longer examples are truncated
    gradient_checkpointing: bool = False  # less activation memory, ~30% slower
    logging_steps: int = Field(5, gt=0)
    save_steps: int = Field(20, gt=0)  # checkpoint cadence: a re-run resumes from the last one
    assistant_only_loss: bool = True  # loss on assistant tokens only (prompts are not learned)
    timeout_minutes: int = Field(120, gt=0)
