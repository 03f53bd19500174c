"""Supervised fine-tuning recipe: base model + method + TRL's SFTTrainer, resumable, logged to MLflow.

Read top to bottom: load tokenizer and model (4-bit for QLoRA), apply vocabulary extension and the method,
build the optimizer and the data set (padded, or packed padding-free), train (resuming from the last
checkpoint in `out_dir` if one exists), save the adapter (or, for full-weight methods, the whole model).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from datasets import load_dataset
from pydantic import BaseModel
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from tasks.model import load_tokenizer
from tasks.training.adapters import adalora_loss
from tasks.training.callbacks import AdaLoRABudget, MLflowMetrics, peak_memory_mb
from tasks.training.config import FULL_WEIGHT, TrainConfig
from tasks.training.methods import apply_method, count_parameters, load_base
from tasks.training.optim import build_optimizer
from tasks.training.templates import training_chat_template
from tasks.vocab import apply_extension


class TrainResult(BaseModel):
    method: str = "lora"
    adapter_dir: Path | None
    """PEFT adapter folder (PeftModel.from_pretrained); None for full-weight methods."""
    model_dir: Path | None = None
    """Full model + tokenizer as safetensors (full, partial, galore); load it as a plain model."""
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


def load_messages(path: Path):
    """The `messages` column of a prepared JSONL split, as an HF dataset."""
    ds = load_dataset("json", data_files=str(path), split="train")
    return ds.select_columns(["messages"])


def mixed_precision(precision: str) -> dict[str, bool]:
    """bf16/fp16 autocast only where the hardware has it; CPU trains in fp32."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return {"bf16": cuda and torch.cuda.is_bf16_supported(), "fp16": False}
    if precision in ("bf16", "fp16") and not cuda:
        raise ValueError(f"train.precision={precision} needs a CUDA GPU; use auto or fp32 on CPU")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError("train.precision=bf16: this GPU has no bf16; use fp16 or auto")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def sft_args(cfg: TrainConfig, out_dir: Path, seed: int = 0) -> SFTConfig:
    return SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a fraction of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_length,
        packing=cfg.packing,
        packing_strategy="bfd",  # best-fit decreasing, whole examples; implies padding-free position ids
        **mixed_precision(cfg.precision),
        gradient_checkpointing=cfg.gradient_checkpointing,
        assistant_only_loss=cfg.assistant_only_loss,
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
    )


def tokens_seen(checkpoint: Path) -> int:
    """Non-padding tokens trained on up to `checkpoint` (exact when save_steps is a multiple of logging_steps)."""
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return int(max((h.get("num_tokens", 0) for h in history), default=0))


def build_trainer(cfg: TrainConfig, model_path: str, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                  logger=None, seed: int = 0, dtype: str = "float32", trust_remote_code: bool = False,
                  eval_path: Path | None = None, callbacks: list | None = None) -> SFTTrainer:
    """Tokenizer, model with the method applied, optimizer and data set, ready to `train()`."""
    tokenizer = load_tokenizer(str(tokenizer_dir), trust_remote_code)
    if cfg.assistant_only_loss:
        template = training_chat_template(tokenizer)
        if template is not None:
            tokenizer.chat_template = template

    torch.manual_seed(seed)
    model = load_base(cfg, model_path, dtype, trust_remote_code)
    new_token_ids = apply_extension(model, tokenizer, Path(tokenizer_dir))
    model = apply_method(model, cfg, trainable_token_ids=new_token_ids, tokenizer_dir=Path(tokenizer_dir))
    head = model.get_output_embeddings()
    if new_token_ids and head is not None and not hasattr(head, "bias"):
        # PEFT's TrainableTokensWrapper (tied lm_head) does not forward `bias`, which TRL's loss reads
        head.register_buffer("bias", None)

    callbacks = [MLflowMetrics(logger), *(callbacks or [])]
    extra = {}
    if cfg.method == "adalora":
        extra["compute_loss_func"] = adalora_loss(model, cfg.adalora.orth_reg_weight)
        callbacks.append(AdaLoRABudget())
    trainer = SFTTrainer(
        model=model, args=sft_args(cfg, Path(out_dir), seed), train_dataset=load_messages(train_path),
        eval_dataset=load_messages(eval_path) if eval_path else None, processing_class=tokenizer,
        callbacks=callbacks, optimizers=(build_optimizer(model, cfg), None), **extra,
    )
    set_total_steps(trainer, cfg)
    return trainer


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


def train_sft(cfg: TrainConfig, model_path: str, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
              logger=None, seed: int = 0, dtype: str = "float32", trust_remote_code: bool = False,
              eval_path: Path | None = None, callbacks: list | None = None) -> TrainResult:
    """Train `cfg.method` on `train_path`; `eval_path` adds a final validation loss; `callbacks` extend the trainer."""
    out_dir = Path(out_dir)
    trainer = build_trainer(cfg, model_path, tokenizer_dir, train_path, out_dir, logger=logger, seed=seed, dtype=dtype,
                            trust_remote_code=trust_remote_code, eval_path=eval_path, callbacks=callbacks)
    trainable, total = count_parameters(trainer.model)
    if logger:
        logger.log_metrics({"train/trainable_params": trainable, "train/total_params": total})

    checkpoints = trainer.args.output_dir
    last = get_last_checkpoint(checkpoints) if Path(checkpoints).is_dir() else None
    if last:  # TRL restarts its non-padding token count on resume; carry on from the checkpoint's
        trainer._total_train_tokens = tokens_seen(Path(last))
    output = trainer.train(resume_from_checkpoint=last)
    eval_loss = trainer.evaluate()["eval_loss"] if eval_path else None

    adapter_dir = model_dir = None
    if cfg.method in FULL_WEIGHT:
        model_dir = out_dir / "model"
        trainer.model.save_pretrained(model_dir, safe_serialization=True)
        trainer.processing_class.save_pretrained(model_dir)
    else:
        adapter_dir = out_dir / "adapter"
        trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
    history = [h for h in trainer.state.log_history if "loss" in h]
    history_path = out_dir / "history.json"
    history_path.write_text(json.dumps(trainer.state.log_history, indent=1))
    return TrainResult(
        method=cfg.method, adapter_dir=adapter_dir, model_dir=model_dir, history_path=history_path,
        trainable_params=trainable, total_params=total, first_loss=history[0]["loss"],
        final_loss=history[-1]["loss"], eval_loss=eval_loss,
        train_runtime_s=output.metrics.get("train_runtime", 0.0),
        train_tokens=int(max((h.get("num_tokens", 0) for h in history), default=0)),
        peak_memory_mb=peak_memory_mb(), resumed_from=last,
    )
