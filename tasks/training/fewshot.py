"""Few-shot learning by episodic prototypical training (Snell et al., 2017) on an LLM's pooled hidden states.

The model learns an embedding in which a class is recognised from a handful of examples. One episode draws N classes
(n_ways) from the training classes, K support rows (n_shots) and Q query rows (n_queries) per class:

    e(x)  = pool(last hidden state of the decoder on x)          mean over the non-padding tokens, or the last one
    c_k   = mean of e(s) over the K support rows s of class k      the prototype
    p(k|q) = softmax_k(-||e(q) - c_k||²)                          nearest prototype, squared Euclidean distance
    loss  = cross-entropy of p over the N·Q queries

One optimizer step averages the loss of meta_batch_size episodes. `held_out_classes` classes never enter training:
the evaluation classifies their episodes with the untrained backbone's prototypes and with the tuned model's.

Why this file is ours: no maintained library does episodic training for Hugging Face causal LMs (learn2learn and
torchmeta are unmaintained and pinned to old torch). What the libraries provide is used: the method's model from
`load_for_training` (LoRA layers sit inside the decoder, so running the decoder alone applies them), our optimizer
groups, transformers' LR schedules, `save_model`, and evals/stats for the intervals.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import get_scheduler

from evals.classification import load_labelled
from evals.stats import mean_ci, paired_bootstrap
from tasks.model import ModelRef
from tasks.training.callbacks import peak_memory_mb
from tasks.training.common import (TrainResult, last_step_checkpoint, load_for_training, precision_flags,
                                   save_step_checkpoint, save_model)
from tasks.training.config import FewShotConfig, TrainConfig
from tasks.training.methods import count_parameters
from tasks.training.optim import build_optimizer

# ---- data: classes, the held-out split, episodes -------------------------------------------------------------------


def split_classes(labels: list[str], n_held_out: int, seed: int, *, n_ways: int = 1,
                  min_rows: int = 1, fixed: list[str] = ()) -> tuple[list[str], list[str]]:
    """(training classes, held-out classes), each sorted; the same labels and seed always give the same split, and
    `fixed` names the held-out classes outright.

    Both sides must fill episodes: n_ways training classes at least (held_out_classes >= n_ways is FewShotConfig's
    check), every class with >= min_rows rows (n_shots + n_queries), or support and query would share rows.
    """
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if fixed:
        if missing := sorted(set(fixed) - set(counts)):
            raise ValueError(f"fewshot.held_out: no rows labelled {missing}")
        n_held_out = len(fixed)
    if len(counts) < n_held_out + n_ways:
        raise ValueError(f"fewshot: {len(counts)} classes in the data, but held_out_classes={n_held_out} plus "
                         f"n_ways={n_ways} for meta-training need at least {n_held_out + n_ways}")
    if small := {c: n for c, n in sorted(counts.items()) if n < min_rows}:
        listed = ", ".join(f"{c!r} has {n}" for c, n in small.items())
        raise ValueError(f"fewshot: every class needs n_shots + n_queries = {min_rows} rows for an episode; {listed}")
    classes = sorted(counts)
    random.Random(seed).shuffle(classes)
    held_out = sorted(fixed) if fixed else sorted(classes[:n_held_out])
    return sorted(set(classes) - set(held_out)), held_out


def rows_by_class(rows: list[dict], classes: list[str]) -> dict[str, list[int]]:
    """Row indices of each class in `classes`."""
    wanted = {c: [] for c in classes}
    for i, r in enumerate(rows):
        if r["label"] in wanted:
            wanted[r["label"]].append(i)
    return wanted


@dataclass
class Episode:
    """Row indices, class-major: support[k*K:(k+1)*K] and query[k*Q:(k+1)*Q] belong to the episode's class k."""

    support: list[int]
    query: list[int]
    support_labels: torch.Tensor
    query_labels: torch.Tensor


def sample_episode(by_class: dict[str, list[int]], n_ways: int, n_shots: int, n_queries: int,
                   rng: random.Random) -> Episode:
    """N classes, then K + Q distinct rows of each (support and query never share a row)."""
    support, query = [], []
    for c in rng.sample(sorted(by_class), n_ways):
        picked = rng.sample(by_class[c], n_shots + n_queries)
        support += picked[:n_shots]
        query += picked[n_shots:]
    return Episode(support, query, torch.arange(n_ways).repeat_interleave(n_shots),
                   torch.arange(n_ways).repeat_interleave(n_queries))


# ---- the embedding and the objective -------------------------------------------------------------------------------


def decoder(model):
    """The transformer body without the LM head (LlamaForCausalLM.model): a 49k-wide projection per token would
    dominate the cost and is never read. Adapter layers (LoRA, IA3, ...) are injected in place, so they apply."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder()


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                     padding_side="right")


def pool(model, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """[batch, hidden] float32 embeddings of a right-padded batch."""
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    hidden = decoder(model)(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state.float()
    if pooling == "last":
        return hidden[torch.arange(len(ids), device=device), mask.sum(1) - 1]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def embed(model, tokenizer, texts: list[str], max_length: int, pooling: str = "mean") -> torch.Tensor:
    """[len(texts), hidden]: the decoder's last hidden state pooled over each text's non-padding tokens."""
    return pool(model, tokenize(tokenizer, texts, max_length), pooling)


def prototypical_loss(support_emb: torch.Tensor, support_labels: torch.Tensor, query_emb: torch.Tensor,
                      query_labels: torch.Tensor, n_ways: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy of the queries over -squared distances to the class prototypes, query accuracy)."""
    labels = support_labels.to(support_emb.device)
    prototypes = torch.zeros(n_ways, support_emb.shape[1], dtype=support_emb.dtype, device=support_emb.device)
    prototypes = prototypes.index_add(0, labels, support_emb) / torch.bincount(labels, minlength=n_ways)[:, None]
    logits = -((query_emb[:, None, :] - prototypes[None]) ** 2).sum(-1)
    targets = query_labels.to(logits.device)
    return F.cross_entropy(logits, targets), (logits.argmax(1) == targets).float().mean()


def episode_loss(model, tokenizer, texts: list[str], ep: Episode, n_ways: int, max_length: int,
                 pooling: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loss, accuracy, non-padding tokens) of one episode: support and query embedded in one forward pass."""
    batch = tokenize(tokenizer, [texts[i] for i in ep.support + ep.query], max_length)
    emb = pool(model, batch, pooling)
    n = len(ep.support)
    loss, acc = prototypical_loss(emb[:n], ep.support_labels, emb[n:], ep.query_labels, n_ways)
    return loss, acc, int(batch["attention_mask"].sum())


@torch.no_grad()
def episode_accuracies(model, tokenizer, rows: list[dict], classes: list[str], fs_cfg: FewShotConfig,
                       n_episodes: int, max_length: int, seed: int, chunk: int = 32) -> np.ndarray:
    """Query accuracy of each of `n_episodes` N-way K-shot episodes over `classes`; the seed fixes the episodes.

    Each row used is embedded once (eval mode: deterministic), then every episode is classified from those
    embeddings, so 100 episodes cost one pass over their rows rather than 100.
    """
    rng = random.Random(seed)
    by_class = rows_by_class(rows, classes)
    episodes = [sample_episode(by_class, fs_cfg.n_ways, fs_cfg.n_shots, fs_cfg.n_queries, rng)
                for _ in range(n_episodes)]
    used = sorted({i for ep in episodes for i in ep.support + ep.query})
    was_training = model.training
    model.eval()
    emb = torch.cat([embed(model, tokenizer, [rows[i]["text"] for i in used[s:s + chunk]], max_length, fs_cfg.pooling)
                     for s in range(0, len(used), chunk)])
    model.train(was_training)
    at = {row: k for k, row in enumerate(used)}
    accuracies = []
    for ep in episodes:
        _, acc = prototypical_loss(emb[[at[i] for i in ep.support]], ep.support_labels,
                                   emb[[at[i] for i in ep.query]], ep.query_labels, fs_cfg.n_ways)
        accuracies.append(float(acc))
    return np.array(accuracies)


# ---- meta-training -------------------------------------------------------------------------------------------------


def train_fewshot(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                  logger=None, seed: int = 0) -> TrainResult:
    """Meta-train `cfg.method` for max_steps steps of meta_batch_size episodes over the training classes.

    Writes out_dir/classes.json ({"train", "held_out"}) for the evaluation, history.json (one entry per step), a
    resumable checkpoint every save_steps under out_dir/checkpoints, and the adapter or model as `save_model` does.
    """
    fs, out_dir = cfg.fewshot, Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    rows = load_labelled(train_path)
    train_classes, held_out = split_classes([r["label"] for r in rows], fs.held_out_classes, seed, n_ways=fs.n_ways,
                                            min_rows=fs.n_shots + fs.n_queries, fixed=fs.held_out)
    (out_dir / "classes.json").write_text(json.dumps({"train": train_classes, "held_out": held_out}, indent=1))
    texts, by_class = [r["text"] for r in rows], rows_by_class(rows, train_classes)

    net, tokenizer = load_for_training(cfg, model, Path(tokenizer_dir), seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net.to(device).train()
    if cfg.gradient_checkpointing:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = build_optimizer(net, cfg)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_training_steps=cfg.max_steps,
                              num_warmup_steps=math.ceil(cfg.warmup_fraction * cfg.max_steps))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision_flags(cfg.precision)["bf16"])
    trainable, total = count_parameters(net)
    if logger:
        logger.log_metrics({"train/trainable_params": trainable, "train/total_params": total})

    history, start, tokens = [], 0, 0
    resumed, state = last_step_checkpoint(checkpoints)
    if resumed:
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name in state["trainable"]:
                    p.copy_(state["trainable"][name])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        history, start = state["history"], state["step"]
        tokens = history[-1]["num_tokens"] if history else 0

    began, logged = time.perf_counter(), start
    for step in range(start, cfg.max_steps):
        rng = random.Random(f"{seed}:{step}")  # the step's episodes depend on (seed, step) only: resume is exact
        losses, accuracies = [], []
        for _ in range(fs.meta_batch_size):
            ep = sample_episode(by_class, fs.n_ways, fs.n_shots, fs.n_queries, rng)
            with autocast:
                loss, acc, n_tokens = episode_loss(net, tokenizer, texts, ep, fs.n_ways, cfg.max_length, fs.pooling)
            (loss / fs.meta_batch_size).backward()  # per episode: one episode's activations in memory at a time
            losses.append(float(loss.detach()))
            accuracies.append(float(acc))
            tokens += n_tokens
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or math.inf)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        history.append({"step": step + 1, "loss": sum(losses) / len(losses), "learning_rate": lr,
                        "episode_accuracy": sum(accuracies) / len(accuracies), "grad_norm": float(grad_norm),
                        "num_tokens": tokens})
        if step == start or (step + 1) % cfg.logging_steps == 0 or step + 1 == cfg.max_steps:
            _log(history[logged:], logger)
            logged = len(history)
        if (step + 1) % cfg.save_steps == 0 or step + 1 == cfg.max_steps:
            save_step_checkpoint(checkpoints, step + 1, {
                "step": step + 1, "history": history, "rng": torch.get_rng_state(),
                "trainable": {n: p.detach().cpu() for n, p in net.named_parameters() if p.requires_grad},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})

    adapter_dir, model_dir = save_model(net, tokenizer, cfg, out_dir)
    history_path = out_dir / "history.json"
    history_path.write_text(json.dumps(history, indent=1))
    return TrainResult(
        recipe="fewshot", method=cfg.method, adapter_dir=adapter_dir, model_dir=model_dir, history_path=history_path,
        trainable_params=trainable, total_params=total, first_loss=history[0]["loss"], final_loss=history[-1]["loss"],
        train_runtime_s=time.perf_counter() - began, train_tokens=tokens, peak_memory_mb=peak_memory_mb(),
        resumed_from=str(resumed) if resumed else None)


def _log(window: list[dict], logger) -> None:
    """Means over the steps since the previous log (single episodes are noisy), to MLflow and stdout."""
    means = {k: sum(h[k] for h in window) / len(window) for k in ("loss", "episode_accuracy", "grad_norm")}
    last = window[-1]
    if logger is not None:
        logger.log_metrics({f"train/{k}": v for k, v in {**means, "learning_rate": last["learning_rate"],
                                                           "peak_memory_mb": peak_memory_mb()}.items()},
                           step=last["step"])
    print(f"fewshot step {last['step']}: loss {means['loss']:.4f}  episode accuracy {means['episode_accuracy']:.3f}",
          flush=True)




# ---- evaluation ----------------------------------------------------------------------------------------------------


def fewshot_evaluation(base_model, tuned_model, tokenizer, rows: list[dict], held_out: list[str], fs_cfg: FewShotConfig,
                       max_length: int, seed: int, n_resamples: int = 1000,
                       confidence: float = 0.95) -> dict[str, float]:
    """N-way K-shot accuracy on the held-out classes, untrained backbone vs tuned, on the same episodes.

    Intervals are bootstrap over episodes; the delta is paired (each episode's difficulty on both sides).
    """
    base = episode_accuracies(base_model, tokenizer, rows, held_out, fs_cfg, fs_cfg.eval_episodes, max_length, seed)
    tuned = episode_accuracies(tuned_model, tokenizer, rows, held_out, fs_cfg, fs_cfg.eval_episodes, max_length, seed)
    out = {"fewshot_chance": 1 / fs_cfg.n_ways, "fewshot_episodes": float(len(base))}
    for name, ci in (("base", mean_ci(base, n_resamples=n_resamples, confidence=confidence, seed=seed)),
                     ("tuned", mean_ci(tuned, n_resamples=n_resamples, confidence=confidence, seed=seed)),
                     ("delta", paired_bootstrap(base, tuned, n_resamples=n_resamples, confidence=confidence,
                                                seed=seed))):
        out.update({f"fewshot_acc_{name}": ci.estimate, f"fewshot_acc_{name}_ci_low": ci.low,
                    f"fewshot_acc_{name}_ci_high": ci.high})
    return out
