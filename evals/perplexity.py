"""Perplexity of a causal LM on chat rows, counted on assistant tokens (what the model was tuned to say)."""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from evals.stats import BootstrapCI, perplexity_ci


@torch.no_grad()
def row_nll(model, input_ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: summed next-token NLL over positions whose label is not -100, and how many there were."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    target = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none")
    return nll.sum(1), (target != -100).sum(1)


def nll_sum(model, input_ids, attention_mask, labels) -> tuple[float, int]:
    """Summed next-token NLL over positions whose label is not -100, and how many there were."""
    sums, counts = row_nll(model, input_ids, attention_mask, labels)
    return sums.sum().item(), int(counts.sum())


def perplexity(model, batches: Iterable[dict], nothing_scored: str) -> float:
    """exp(mean NLL) over every labelled token of all batches (dicts of input_ids, attention_mask, labels)."""
    model.eval()
    total_nll, total_tokens = 0.0, 0
    for batch in batches:
        nll, count = nll_sum(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        total_nll += nll
        total_tokens += count
    if total_tokens == 0:
        raise ValueError(nothing_scored)
    return math.exp(total_nll / total_tokens)


@torch.no_grad()
def chat_perplexity(model, tokenizer, rows: list[list[dict]], max_length: int = 1024, batch_size: int = 8,
                    chat_template: str | None = None) -> float:
    """exp(mean NLL) over assistant tokens of all rows. `chat_template` must carry generation markers."""
    nll, counts = chat_row_nll(model, tokenizer, rows, max_length, batch_size, chat_template)
    if counts.sum() == 0:
        raise ValueError("no assistant tokens to score")
    return math.exp(nll.sum() / counts.sum())


@torch.no_grad()
def chat_perplexity_ci(model, tokenizer, rows: list[list[dict]], max_length: int = 1024, batch_size: int = 8,
                       chat_template: str | None = None, *, n_resamples: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> BootstrapCI:
    """`chat_perplexity` with a row-bootstrap interval (`evals.stats.perplexity_ci`), from the same forward passes."""
    nll, counts = chat_row_nll(model, tokenizer, rows, max_length, batch_size, chat_template)
    if counts.sum() == 0:
        raise ValueError("no assistant tokens to score")
    return perplexity_ci(nll, counts, n_resamples=n_resamples, confidence=confidence, seed=seed)


@torch.no_grad()
def chat_row_nll(model, tokenizer, rows: list[list[dict]], max_length: int = 1024, batch_size: int = 8,
                 chat_template: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(summed NLL, assistant-token count) per row: per-row scores that two models can be compared on, item by item."""
    model.eval()
    sums, counts = [], []
    for i in tqdm(range(0, len(rows), batch_size), desc="perplexity", leave=False):
        enc = tokenizer.apply_chat_template(
            rows[i:i + batch_size], chat_template=chat_template, tokenize=True, return_dict=True,
            return_assistant_tokens_mask=True, padding=True, truncation=True, max_length=max_length,
            return_tensors="pt",
        )
        labels = enc["input_ids"].masked_fill(enc["assistant_masks"] == 0, -100)
        row_sums, row_counts = row_nll(model, enc["input_ids"], enc["attention_mask"], labels)
        sums += row_sums.tolist()
        counts += row_counts.tolist()
    return np.asarray(sums), np.asarray(counts)


@torch.no_grad()
def generate_replies(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 96) -> list[str]:
    """Greedy replies, one per prompt (list of messages ending with a user turn)."""
    model.eval()
    out = []
    for messages in prompts:
        enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        out.append(tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out
