"""Perplexity on general (non-domain) text, to see forgetting.

Perplexity on the validation split says how well the model learned the domain; it cannot say what the
model lost. Plain text from MMLU's val split (question + correct answer, 57 subjects) is a cheap
general-knowledge probe: if the tuned model's perplexity on it rises well above the base model's,
tuning overwrote general language ability. The val split is used so that the texts never overlap the
test questions the benchmarks score.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
from tqdm import tqdm

from evals.benchmarks import _read_mmlu
from evals.perplexity import perplexity


def general_text_samples(data_dir: Path, n: int, seed: int) -> list[str]:
    """`n` texts "{question} {answer}", round-robin over subjects (shuffled order), all of them if n is larger.

    Round-robin keeps every subject represented (counts differ by at most one until small subjects run
    out), so a few large subjects cannot dominate the probe.
    """
    val_dir = Path(data_dir) / "mmlu" / "val"
    files = sorted(val_dir.glob("*_val.csv"))
    if not files:
        raise FileNotFoundError(f"MMLU val CSVs not found under {val_dir}")
    rng = random.Random(seed)
    pools = []
    for path in files:
        texts = [f"{r['question'].strip()} {r['choices'][r['answer']].strip()}" for r in _read_mmlu(path)]
        rng.shuffle(texts)
        pools.append(texts)
    rng.shuffle(pools)
    out: list[str] = []
    depth = 0
    while len(out) < n and any(depth < len(p) for p in pools):
        out.extend(p[depth] for p in pools if depth < len(p))
        depth += 1
    return out[:n]


@torch.no_grad()
def text_perplexity(model, tokenizer, texts: list[str], max_length: int = 512, batch_size: int = 8) -> float:
    """exp(mean NLL) over every non-pad token of plain texts (no chat template); padding never changes it."""
    if not texts:
        raise ValueError("no texts to score")

    def batches():
        for i in tqdm(range(0, len(texts), batch_size), desc="general-text perplexity", leave=False):
            # Right padding keeps each text's positions identical to scoring it alone.
            enc = tokenizer(texts[i:i + batch_size], padding=True, padding_side="right", truncation=True,
                            max_length=max_length, return_tensors="pt")
            yield {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}

    return perplexity(model, batches(), "texts are too short to score (each needs at least two tokens)")
