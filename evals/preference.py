"""Preference metrics on held-out pairs: how much more likely a model finds the chosen reply than the rejected one.

Per pair, with the summed log-prob of each reply given its prompt turns (the model's chat template):
    pref_margin    log p(chosen) - log p(rejected)
    pref_accuracy  1 when that margin is > 0, else 0
Scored for base and tuned on the same pairs, so the drift table shows both with a paired interval. The tuned
margin minus the base margin is DPO's implicit reward margin (over β): see `implicit_reward`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


def read_pairs(path: Path, limit: int | None) -> list[dict]:
    """Preference rows of a prepared split: {"messages": prompt turns, "chosen": str, "rejected": str}."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "chosen" in row and "rejected" in row:
                rows.append(row)
            if limit and len(rows) >= limit:
                break
    return rows


@torch.no_grad()
def reply_logps(model, tokenizer, prompts: list[list[dict]], replies: list[str], batch_size: int = 8,
                max_length: int = 1024) -> np.ndarray:
    """Summed log-prob of each reply's tokens (its end-of-turn included) given its prompt turns."""
    model.eval()
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="reply log-probs", leave=False):
        ids, starts = [], []
        for prompt, reply in zip(prompts[i:i + batch_size], replies[i:i + batch_size]):
            head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": reply}], tokenize=False)
            if not full.startswith(head):
                raise ValueError("the chat template does not render the prompt as a prefix of prompt + reply")
            n_head = len(tokenizer(head, add_special_tokens=False)["input_ids"])
            ids.append(tokenizer(full, add_special_tokens=False)["input_ids"][:max_length])
            starts.append(n_head)
        width = max(map(len, ids))
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        token_logps = torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        positions = torch.arange(1, width)[None, :]
        mask = (positions >= torch.tensor(starts)[:, None]) & (attention[:, 1:] == 1)
        out.extend((token_logps * mask).sum(1).tolist())
    return np.asarray(out)


def preference_scores(model, tokenizer, pairs: list[dict]) -> dict[str, np.ndarray]:
    """Per-pair `pref_margin` and `pref_accuracy`."""
    prompts = [p["messages"] for p in pairs]
    chosen = reply_logps(model, tokenizer, prompts, [p["chosen"] for p in pairs])
    rejected = reply_logps(model, tokenizer, prompts, [p["rejected"] for p in pairs])
    margin = chosen - rejected
    return {"pref_margin": margin, "pref_accuracy": (margin > 0).astype(float)}


def implicit_reward(base_margin: np.ndarray, tuned_margin: np.ndarray) -> dict[str, float]:
    """DPO's implicit reward on held-out pairs, per unit β: r(chosen) - r(rejected) = tuned margin - base margin.
    Accuracy counts pairs where it is > 0; ties (no change) count apart."""
    diff = np.asarray(tuned_margin) - np.asarray(base_margin)
    return {"implicit_reward_margin": float(diff.mean()), "implicit_reward_accuracy": float((diff > 0).mean()),
            "implicit_reward_ties": float((diff == 0).mean())}
