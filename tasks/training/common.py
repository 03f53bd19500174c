"""What every recipe shares, written once: load the model for training, map `TrainConfig` to TRL's arguments,
run the trainer with resume, save what it trained and describe it as a `TrainResult`.

A recipe module (sft.py, and the preference and RL recipes) reads top to bottom as:
`load_for_training` -> its own TRL config/trainer pair built with `training_args` -> `run_trainer`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from functools import cache
from pathlib import Path

import torch
from pydantic import BaseModel
from transformers.trainer_utils import get_last_checkpoint

from tasks.model import ModelRef
from tasks.training import fused_head
from tasks.training.attention import use_packed_attention
from tasks.training.callbacks import AdaLoRABudget, MLflowMetrics, peak_memory_mb
from tasks.training.config import FULL_WEIGHT, TrainConfig
from tasks.training.continual import attach as attach_continual
from tasks.training.methods import apply_method, count_parameters, load_base
from tasks.training.optim import build_optimizer
from tasks.training.templates import training_chat_template
from tasks.vocab import apply_extension


class Trained(BaseModel):
    """Weights that evaluation and packaging take: an adapter folder or a full model folder."""

    recipe: str = "sft"
    method: str = "lora"
    adapter_dir: Path | None
    """PEFT adapter folder (PeftModel.from_pretrained); None for full-weight methods."""
    model_dir: Path | None = None
    """Full model + tokenizer as safetensors (full, partial, galore); load it as a plain model."""
    history_path: Path | None = None
    teacher_dir: Path | None = None  # distill: the teacher the student learned from (evaluation compares speed)
    baseline_model_dir: Path | None = None  # distill: the same student trained by plain SFT, for the comparison

    def summary(self) -> str:
        return f"{self.recipe} / {self.method}: {'an adapter' if self.adapter_dir else 'a full model'}"


class TrainResult(Trained):
    history_path: Path
    trainable_params: int
    total_params: int
    first_loss: float
    final_loss: float
    eval_loss: float | None = None
    train_runtime_s: float
    train_tokens: int = 0
    """Non-padding tokens seen (this run and the checkpoint it resumed from)."""
    peak_memory_mb: float = 0.0
    resumed_from: str | None

    def summary(self) -> str:
        trained = f"{_millions(self.trainable_params)} of {_millions(self.total_params)} params"
        resumed = f", resumed from {Path(self.resumed_from).name}" if self.resumed_from else ""
        return (f"{self.recipe} / {self.method}: loss {self.first_loss:.3f} -> {self.final_loss:.3f}, {trained} "
                f"trained{resumed}")


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


@cache
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU multiplies bf16 in hardware (measured here: ~4.5x fp32 GEMM throughput).

    Without them torch emulates bf16 and a bf16 run is several times slower than fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


def precision_flags(precision: str) -> dict[str, bool]:
    """TrainingArguments' bf16/fp16, chosen from the hardware: TRL's own default (bf16=True) would emulate bf16
    on CPUs without it, ~3x slower than fp32."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if cuda else cpu_has_native_bf16()
        return {"bf16": native, "fp16": False}
    if precision == "fp16" and not cuda:
        raise ValueError("train.precision=fp16 needs a CUDA GPU; use auto, bf16 or fp32 on CPU")
    if precision == "bf16" and not (torch.cuda.is_bf16_supported() if cuda else cpu_has_native_bf16()):
        raise ValueError("train.precision=bf16: this hardware has no native bf16 (it would be emulated, "
                         "several times slower); use auto or fp32")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_args(cfg: TrainConfig, out_dir: Path, seed: int, args_cls, **recipe_args):
    """The one mapping from `TrainConfig` to a TRL config (`SFTConfig`, `DPOConfig`, ...).

    Every field a TRL 1.x config defaults unsafely is set here explicitly: precision comes from the hardware
    and gradient checkpointing from the config (TRL turns both on by default, even on a CPU).
    """
    return args_cls(
        output_dir=str(Path(out_dir) / "checkpoints"),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_fraction,  # a float < 1 is a fraction of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        **precision_flags(cfg.precision),
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        save_only_model=False,  # optimizer, scheduler and RNG states too: resume is exact
        seed=seed,
        data_seed=seed,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        eval_strategy="no",
        prediction_loss_only=True,  # evaluation reads the loss: no logits kept (or gathered across processes)
        ddp_find_unused_parameters=False,  # every trainable parameter is used; True costs a graph walk per step
        **recipe_args,
    )


def load_for_training(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, seed: int = 0,
                      marked_template: bool = False):
    """(trainable model, tokenizer): the base as the method needs it, the vocabulary extension, then the method.

    `marked_template`: give the tokenizer a chat template with generation markers (SFT's assistant-only loss).
    """
    tokenizer = model.load_tokenizer(tokenizer_dir)
    if marked_template:
        template = training_chat_template(tokenizer)
        if template is not None:
            tokenizer.chat_template = template
    torch.manual_seed(seed)
    base = load_base(cfg, model)
    use_packed_attention(base)  # packed rows attend per example on CPU too (attention.py)
    new_token_ids = apply_extension(base, tokenizer, Path(tokenizer_dir))
    trainable = apply_method(base, cfg, trainable_token_ids=new_token_ids, tokenizer_dir=Path(tokenizer_dir))
    head = trainable.get_output_embeddings()
    if new_token_ids and head is not None and not hasattr(head, "bias"):
        # PEFT's TrainableTokensWrapper (tied lm_head) does not forward `bias`, which TRL's loss reads
        head.register_buffer("bias", None)
    return trainable, tokenizer


def load_reference(cfg: TrainConfig, model: ModelRef, tokenizer, tokenizer_dir: Path):
    """The reference model to hand the trainer: None with an adapter (the base with the adapter disabled is the
    reference) or with precomputed reference log-probs; for a full-weight run, a frozen copy of the starting model
    (with the vocabulary extension)."""
    if cfg.method not in FULL_WEIGHT or cfg.dpo.precompute_ref_log_probs:
        return None
    ref = model.load_model()
    apply_extension(ref, tokenizer, Path(tokenizer_dir))
    return ref.requires_grad_(False).eval()


def trainer_callbacks(cfg: TrainConfig, logger=None, extra: list | None = None) -> list:
    """Per-step MLflow metrics, AdaLoRA's budget schedule when that is the method, then the caller's."""
    return [MLflowMetrics(logger), *([AdaLoRABudget()] if cfg.method == "adalora" else []), *(extra or [])]


def make_trainer(trainer_cls, cfg: TrainConfig, model, tokenizer, args, train_dataset, logger=None,
                 callbacks: list | None = None, **recipe_kwargs):
    """A TRL trainer with what every recipe gives it: our optimizer groups, the callbacks, the LM head scored at
    labelled positions only (fused_head.py), the step budget, and `train.continual`'s EWC or LwF term on the loss
    (before `train()`, so before a checkpoint is loaded).
    A recipe's `eval_dataset` is cut to `cfg.eval_max_rows` rows and evaluated every `cfg.eval_steps` steps."""
    if recipe_kwargs.get("eval_dataset") is not None:
        recipe_kwargs["eval_dataset"] = evaluate_during_training(args, cfg, recipe_kwargs["eval_dataset"])
    trainer = trainer_cls(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                          callbacks=trainer_callbacks(cfg, logger, callbacks),
                          optimizers=(build_optimizer(model, cfg), None), **recipe_kwargs)
    for model_ in (trainer.model, getattr(trainer, "ref_model", None)):
        if model_ is not None:
            fused_head.install(model_)  # the LM head at labelled positions only (fused_head.py)
    peft_configs = getattr(trainer.model, "peft_config", {})
    if "ref" in peft_configs:
        # TRL's DPO/KTO copy a PEFT model's adapter as a frozen "ref" adapter, for adapters that were trained before.
        # Ours are always fresh (init_from folds earlier ones into the base), so the base with the adapter disabled
        # is the same reference, without the copy's memory or its extra forward pass.
        trainer.model.delete_adapter("ref")
    set_total_steps(trainer, cfg)
    attach_continual(trainer, cfg, logger)
    return trainer


def evaluate_during_training(args, cfg: TrainConfig, eval_dataset):
    """Switch `args` (built with eval_strategy="no") to a validation loss every `cfg.eval_steps` optimizer steps;
    transformers adds one at the last step. Returns the first `cfg.eval_max_rows` rows of `eval_dataset`: the same
    rows every time, so the curve moves with the model only."""
    from transformers.trainer_utils import IntervalStrategy

    args.eval_strategy = IntervalStrategy.STEPS
    args.eval_steps = cfg.eval_steps
    if hasattr(eval_dataset, "select") and len(eval_dataset) > cfg.eval_max_rows:
        eval_dataset = eval_dataset.select(range(cfg.eval_max_rows))
    return eval_dataset


def final_eval_loss(trainer) -> float | None:
    """The validation loss the trainer logged at its last step, if it evaluated there."""
    for entry in reversed(trainer.state.log_history):
        if "eval_loss" in entry and entry.get("step") == trainer.state.global_step:
            return float(entry["eval_loss"])
    return None


def set_total_steps(trainer, cfg: TrainConfig) -> int:
    """Stop at max_steps or after `epochs`, whichever comes first (HF's max_steps alone would override epochs).

    Known only once the data set is tokenized (and packed); AdaLoRA's budget schedule is stretched to it.
    """
    per_epoch = math.ceil(len(trainer.get_train_dataloader()) / cfg.grad_accum)
    steps = min(cfg.max_steps, math.ceil(cfg.epochs * per_epoch))
    trainer.args.max_steps = steps
    if cfg.method == "adalora":
        if cfg.adalora.tinit >= steps - cfg.adalora.tfinal:
            raise ValueError(f"adalora: tinit must be < {steps} training steps - tfinal")
        trainer.model.base_model.rankallocator.set_total_step(steps)  # also the saved config's total_step
    return steps


def tokens_seen(checkpoint: Path) -> int:
    """Non-padding tokens trained on up to `checkpoint` (exact when save_steps is a multiple of logging_steps)."""
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return int(max((h.get("num_tokens", 0) for h in history), default=0))


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint written to the end, or None. The trainer writes trainer_state.json last, so a process
    killed while saving leaves a checkpoint without it: that one is removed, and the one before it is resumed."""
    if not checkpoints.is_dir():
        return None
    while (last := get_last_checkpoint(str(checkpoints))) and not (Path(last) / "trainer_state.json").is_file():
        shutil.rmtree(last, ignore_errors=True)  # every rank of a distributed run looks
    return last


def last_step_checkpoint(folder: Path) -> tuple[Path | None, dict | None]:
    """(path, state) of the newest `step-N.pt` that `save_step_checkpoint` wrote under `folder`, or (None, None).
    For the hand-written training loops (PPO, few-shot) that have no HF checkpoint folders."""
    found = sorted(Path(folder).glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if not found:
        return None, None
    return found[-1], torch.load(found[-1], weights_only=True)  # tensors and plain values only: loading runs no code


def save_step_checkpoint(folder: Path, step: int, state: dict, keep: int = 2) -> None:
    """`folder/step-N.pt`, written to a temporary name and renamed, so a kill while saving never leaves a half
    checkpoint; only the newest `keep` are kept."""
    tmp = folder / f".step-{step}.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / f"step-{step}.pt")
    for old in sorted(folder.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))[:-keep]:
        old.unlink()


def save_trained(trainer, cfg: TrainConfig, out_dir: Path) -> tuple[Path | None, Path | None]:
    """`save_model` for a trainer, which may run on several processes (launch.py): FSDP and DeepSpeed shard the
    weights, so every rank joins the trainer's own gather and rank 0 writes; with DDP (or one process) rank 0
    saves its full copy."""
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        folder = out_dir / ("model" if cfg.method in FULL_WEIGHT else "adapter")
        trainer.save_model(str(folder))
        return (None, folder) if cfg.method in FULL_WEIGHT else (folder, None)
    if not trainer.args.should_save:
        return (None, out_dir / "model") if cfg.method in FULL_WEIGHT else (out_dir / "adapter", None)
    return save_model(trainer.model, trainer.processing_class, cfg, out_dir)


def save_model(model, tokenizer, cfg: TrainConfig, out_dir: Path) -> tuple[Path | None, Path | None]:
    """(adapter folder, model folder), one of them None: the adapter alone, or the whole model with its tokenizer
    for full-weight methods."""
    if cfg.method in FULL_WEIGHT:
        model.save_pretrained(out_dir / "model", safe_serialization=True)
        tokenizer.save_pretrained(out_dir / "model")
        return None, out_dir / "model"
    model.save_pretrained(out_dir / "adapter", safe_serialization=True)
    return out_dir / "adapter", None


def run_trainer(trainer, cfg: TrainConfig, out_dir: Path, logger=None, evaluate: bool = False) -> TrainResult:
    """Train a `make_trainer` trainer (resuming from the last checkpoint under `out_dir`), save the adapter or the
    whole model, summarise."""
    out_dir = Path(out_dir)
    trainable, total = count_parameters(trainer.model)
    if logger:
        logger.log_metrics({"train/trainable_params": trainable, "train/total_params": total})

    last = last_complete_checkpoint(Path(trainer.args.output_dir))
    if last:  # TRL restarts its non-padding token count on resume; carry on from the checkpoint's
        trainer._total_train_tokens = tokens_seen(Path(last))
    output = trainer.train(resume_from_checkpoint=last)
    eval_loss = None
    if evaluate:  # the last step's evaluation when training ran one there, else one now
        eval_loss = final_eval_loss(trainer)
        eval_loss = trainer.evaluate()["eval_loss"] if eval_loss is None else eval_loss

    adapter_dir, model_dir = save_trained(trainer, cfg, out_dir)
    history = [h for h in trainer.state.log_history if "loss" in h]
    history_path = out_dir / "history.json"
    if trainer.args.should_save:  # rank 0 of a distributed run (launch.py); the only process otherwise
        history_path.write_text(json.dumps(trainer.state.log_history, indent=1))
    return TrainResult(
        recipe=cfg.recipe, method=cfg.method, adapter_dir=adapter_dir, model_dir=model_dir, history_path=history_path,
        trainable_params=trainable, total_params=total, first_loss=history[0]["loss"],
        final_loss=history[-1]["loss"], eval_loss=eval_loss,
        train_runtime_s=output.metrics.get("train_runtime", 0.0),
        train_tokens=int(max((h.get("num_tokens", 0) for h in history), default=0)),
        peak_memory_mb=peak_memory_mb(), resumed_from=last,
    )
