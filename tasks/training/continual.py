"""Continual learning: train on a new task without forgetting the previous one (`train.continual`).

- ewc (Kirkpatrick et al. 2017): loss += λ Σ_i F_i (θ_i − θ_old,i)², F the diagonal empirical Fisher of the previous
  task's loss at θ_old, over the trainable parameters. No ½: the design documents' formula has none.
- replay: a share of the training rows is drawn from the previous task's rows (a mixed JSONL under out_dir).
- lwf (Li & Hoiem 2016): loss += α T² KL(p_old || p_new) of the temperature-softened next-token distributions on the
  new task's labelled positions, p_old from the model training started from.

θ_old is the model training starts from: for an adapter (a PEFT model) the base with the adapter disabled, plus the
adapter's starting values for EWC; otherwise the starting values of the trainable weights (LwF runs the model on them
with `torch.func.functional_call`, so no second copy of the frozen weights is kept). Both are taken in `attach`, before
`Trainer.train` loads a checkpoint, so a resumed run penalises towards the same θ_old and F.

Why hand-written: TRL, PEFT and transformers have no EWC, LwF or replay; Avalanche has them, but built around its own
strategies and benchmarks for torch classification, not a Hugging Face causal-LM trainer. What is here wraps the TRL
trainer's `compute_loss` (and, for LwF, SFT's `compute_loss_func`, which gets the full logits) and `log`.
"""
from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tasks.training.config import CONTINUAL_RECIPES as SUPPORTED, check_continual  # noqa: F401 (re-exported)

log = logging.getLogger("tuneforge")


def previous_path(previous_data: str | None) -> Path:
    if not previous_data:
        raise ValueError("train.continual.previous_data is not set")
    if previous_data.startswith("stage:"):
        raise ValueError(f"train.continual.previous_data={previous_data}: the chain resolves stage:<name> to that "
                         "stage's prepared train split before training; pass a JSONL path here")
    path = Path(previous_data)
    if not path.is_file():
        raise FileNotFoundError(f"train.continual.previous_data: no file {path}")
    return path


# ---- the terms ------------------------------------------------------------------------------------------------------

def fisher_diagonal(model: nn.Module, batches: Iterable[dict], loss_of: Callable | None = None) -> dict[str, Tensor]:
    """The diagonal empirical Fisher of the trainable parameters: F_i = mean over examples of (∂ loss / ∂θ_i)².

    Pass one example per batch: the mean of squared per-example gradients is the Fisher, the square of a batch's
    mean gradient is not. `loss_of(model, batch)` defaults to the causal-LM loss (mean over the example's labelled
    tokens). Runs in eval mode (no dropout) with `torch.autograd.grad`: weights and `.grad` are left as they were.
    """
    loss_of = loss_of or causal_lm_loss
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    was_training, count = model.training, 0
    model.eval()
    try:
        for batch in batches:
            grads = torch.autograd.grad(loss_of(model, batch), list(params.values()), allow_unused=True)
            for name, g in zip(params, grads):
                if g is not None:
                    fisher[name] += g.float() ** 2
            count += 1
    finally:
        model.train(was_training)
    return {n: f / max(count, 1) for n, f in fisher.items()}


def causal_lm_loss(model: nn.Module, batch: dict) -> Tensor:
    device = next(model.parameters()).device
    return model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False).loss


def ewc_penalty(model: nn.Module, fisher: dict[str, Tensor], theta_old: dict[str, Tensor], lam: float) -> Tensor:
    """λ Σ_i F_i (θ_i − θ_old,i)² over the parameters in `fisher` (the trainable ones), in float32."""
    terms = [(fisher[n] * (p.float() - theta_old[n].float()) ** 2).sum()
             for n, p in model.named_parameters() if n in fisher]
    return lam * torch.stack(terms).sum() if terms else torch.zeros(())


def lwf_loss(logits: Tensor, old_logits: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """T² KL(softmax(old/T) || softmax(new/T)), averaged over the positions where `mask` is true.

    `logits`, `old_logits`: [..., vocab]; `mask`: the leading dims, true where the position's next token is a label
    (for a causal LM: `labels[:, 1:] != -100` against `logits[:, :-1]`). Zero when no position is masked in.
    """
    new, old = logits[mask].float() / temperature, old_logits[mask].float() / temperature
    if new.numel() == 0:
        return logits.sum() * 0.0
    kl = F.kl_div(F.log_softmax(new, -1), F.log_softmax(old, -1), log_target=True, reduction="batchmean")
    return temperature ** 2 * kl


# ---- replay ---------------------------------------------------------------------------------------------------------

def row_kind(row: dict) -> str:
    """The prepared row's data kind (tasks.data's row schema): sft, preference, kto or text."""
    if "chosen" in row:
        return "preference"
    if "label" in row:
        return "kto"
    if row.get("messages"):
        return "sft"
    if "text" in row:
        return "text"
    raise ValueError(f"not a prepared row (keys {sorted(row)})")


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _kind_of(rows: list[dict], path: Path) -> str:
    from tasks.training.recipes import DATA_KINDS

    kinds = {row_kind(r) for r in rows}
    if len(kinds) != 1:
        raise ValueError(f"{path}: rows of several kinds ({', '.join(sorted(DATA_KINDS[k] for k in kinds))})")
    return kinds.pop()


def replay_mix(train_path: Path, previous_path: Path, fraction: float, seed: int, out_path: Path,
               logger=None) -> Path:
    """Write `out_path`: every new row, plus n previous-task rows with n / (n + new) = `fraction` (rounded), shuffled.

    The previous rows are drawn without replacement when there are enough of them; otherwise each is taken as many
    whole times as fits and the rest drawn. The counts go to the log and to `logger` (continual/replay_*).
    """
    from tasks.training.recipes import DATA_KINDS

    new, previous = read_rows(train_path), read_rows(previous_path)
    if not new or not previous:
        raise ValueError(f"replay needs rows in both {train_path} and {previous_path}")
    new_kind, previous_kind = _kind_of(new, train_path), _kind_of(previous, previous_path)
    if new_kind != previous_kind:
        raise ValueError(f"train.continual.previous_data holds {DATA_KINDS[previous_kind]} but the training data is "
                         f"{DATA_KINDS[new_kind]}: replay mixes rows of the same kind")
    rng = random.Random(seed)
    n = round(fraction * len(new) / (1 - fraction))
    whole, rest = divmod(n, len(previous))
    drawn = previous * whole + rng.sample(previous, rest)
    rows = new + drawn
    rng.shuffle(rows)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    counts = {"continual/replay_new_rows": len(new), "continual/replay_previous_rows": n,
              "continual/replay_fraction": n / len(rows)}
    log.info("replay: %d new rows + %d previous-task rows (%.3f) -> %s", len(new), n, n / len(rows), out_path)
    if logger is not None:
        logger.log_metrics(counts)
    return out_path


def training_data(cfg, train_path: Path, out_dir: Path, seed: int = 0, logger=None) -> Path:
    """The rows to train on: `train_path`, or with strategy replay the mixed file under `out_dir`."""
    c = cfg.continual
    if c.strategy != "replay":
        return Path(train_path)
    check_continual(cfg.recipe, c.strategy)
    return replay_mix(Path(train_path), previous_path(c.previous_data), c.replay_fraction, seed,
                      Path(out_dir) / "replay_train.jsonl", logger)


# ---- the previous task's examples, tokenised like SFT ----------------------------------------------------------------

def previous_examples(path: Path, tokenizer, n: int, max_length: int, seed: int = 0,
                      assistant_only: bool = True) -> list[dict[str, Tensor]]:
    """Up to `n` previous-task rows (seeded sample), one example each: `input_ids` and `labels` ([1, length]).

    Chat rows through the chat template with labels on the assistant tokens (all tokens without `assistant_only`),
    a preference pair as its prompt + chosen reply, a KTO row only when desirable, plain text on every token.
    """
    from tasks.training.templates import training_chat_template

    rows = [r for r in read_rows(path) if r.get("label") is not False]
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    template = None
    examples = []
    for row in rows:
        if row_kind(row) == "text":
            ids = tokenizer(row["text"], truncation=True, max_length=max_length)["input_ids"]
            labels = list(ids)
        else:
            if template is None:
                template = (training_chat_template(tokenizer) if assistant_only else None) or tokenizer.chat_template
            messages = row["messages"] + ([{"role": "assistant", "content": row["chosen"]}] if "chosen" in row else [])
            enc = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=assistant_only)
            ids = list(enc["input_ids"])[:max_length]
            marks = enc["assistant_masks"] if assistant_only else [1] * len(ids)
            labels = [i if m else -100 for i, m in zip(ids, marks)]
        if any(label != -100 for label in labels[1:]):  # something to predict after truncation
            examples.append({"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels])})
    if not examples:
        raise ValueError(f"train.continual.previous_data={path}: no row with a token to learn within max_length")
    return examples


# ---- attaching to a TRL trainer -------------------------------------------------------------------------------------

def _accumulation_share(trainer, num_items_in_batch) -> float:
    """What one micro-batch adds of a per-step term: 1 / accumulation steps where the trainer leaves gradient
    accumulation to the loss (Trainer.training_step's own rule), else 1 (the trainer divides)."""
    scaled = getattr(trainer, "loss_is_scaled_for_ga", None)
    if scaled is None:
        scaled = (trainer.model_accepts_loss_kwargs and num_items_in_batch is not None) \
            or trainer.compute_loss_func is not None
    return 1.0 / trainer.current_gradient_accumulation_steps if scaled else 1.0


def _shifted_ce(outputs, labels, num_items_in_batch=None):
    from transformers.loss.loss_utils import ForCausalLMLoss

    return ForCausalLMLoss(outputs.logits, labels, vocab_size=outputs.logits.size(-1),
                           num_items_in_batch=num_items_in_batch)


def attach(trainer, cfg, logger=None) -> None:
    """Add `train.continual`'s EWC penalty or LwF term to a `make_trainer` trainer's training loss, and log them.

    Nothing for naive and replay (replay only changes the data). The terms enter the training loss (so the logged
    `loss` includes them) but not an evaluation loss; `continual/ewc_penalty` and `continual/lwf_loss` (T² KL, before
    α) are logged with the loss, each the mean over the micro-batches since the last log.
    """
    c = cfg.continual
    check_continual(cfg.recipe, c.strategy)
    if c.strategy not in ("ewc", "lwf"):
        return
    model = trainer.model
    theta_old = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])

    def record(key: str, value: Tensor):
        sums[key][0] += value.item()
        sums[key][1] += 1

    fisher: dict[str, Tensor] = {}
    if c.strategy == "ewc":
        examples = previous_examples(previous_path(c.previous_data), trainer.processing_class, c.fisher_samples,
                                     cfg.max_length, trainer.args.seed, cfg.assistant_only_loss)
        fisher = fisher_diagonal(model, examples)
        mean = sum(f.sum().item() for f in fisher.values()) / max(sum(f.numel() for f in fisher.values()), 1)
        log.info("ewc: diagonal Fisher of %d tensors on %d previous-task examples, mean %.3g", len(fisher),
                 len(examples), mean)
        if logger is not None:
            logger.log_metrics({"continual/fisher_examples": len(examples), "continual/fisher_mean": mean})

    compute_loss = trainer.compute_loss
    old: dict[str, Tensor] = {}

    def compute_loss_with_terms(model_, inputs, return_outputs=False, num_items_in_batch=None):
        training = trainer.model.training
        if training and c.strategy == "lwf" and "input_ids" in inputs:
            old["logits"] = old_model_logits(trainer.model, theta_old, inputs)
        result = compute_loss(model_, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if not (training and c.strategy == "ewc"):
            return result
        loss, rest = (result[0], result[1:]) if return_outputs else (result, ())
        penalty = ewc_penalty(trainer.model, fisher, theta_old, c.ewc_lambda)
        record("continual/ewc_penalty", penalty.detach())
        loss = loss + penalty.to(loss.device) * _accumulation_share(trainer, num_items_in_batch)
        return (loss, *rest) if return_outputs else loss

    trainer.compute_loss = compute_loss_with_terms

    if c.strategy == "lwf":  # SFT's compute_loss hands `compute_loss_func` the full logits (TRL's fused head has none)
        base_loss = trainer.compute_loss_func or _shifted_ce

        def loss_with_lwf(outputs, labels, num_items_in_batch=None):
            logits = outputs.logits[:, -labels.size(1):]  # prompt learning prepends virtual tokens
            outputs.logits = logits
            loss = base_loss(outputs, labels, num_items_in_batch=num_items_in_batch)
            old_logits = old.pop("logits", None)
            if old_logits is None:  # evaluation
                return loss
            term = lwf_loss(logits[:, :-1], old_logits[:, -labels.size(1):][:, :-1], labels[:, 1:] != -100,
                            c.lwf_temperature)
            record("continual/lwf_loss", term.detach())
            return loss + c.lwf_alpha * term * _accumulation_share(trainer, num_items_in_batch)

        trainer.compute_loss_func = loss_with_lwf

    trainer_log = trainer.log

    def log_with_terms(logs: dict, *args, **kwargs):
        if "loss" in logs:
            logs.update({k: total / count for k, (total, count) in sums.items() if count})
            sums.clear()
        return trainer_log(logs, *args, **kwargs)

    trainer.log = log_with_terms


def old_model_logits(model: nn.Module, theta_old: dict[str, Tensor], inputs: dict) -> Tensor:
    """The starting model's logits on the batch, without gradients, in eval mode: a PEFT model with its adapter
    disabled, any other model run on the trainable weights' starting values."""
    kwargs = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k",
                                     "max_length_q", "max_length_k") if k in inputs}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if hasattr(model, "disable_adapter"):
                with model.disable_adapter():
                    return model(**kwargs, use_cache=False).logits
            return torch.func.functional_call(model, theta_old, args=(), kwargs={**kwargs, "use_cache": False},
                                              strict=False).logits
    finally:
        model.train(was_training)
