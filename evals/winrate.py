"""Win rate of the tuned model over the base model, judged by a scalar reward model.

Benchmarks say whether tuning broke general knowledge; they do not say whether replies got better.
A reward model (sequence classification, one logit) scores base and tuned replies to the same
prompts, and the paired win rate (ties count half) with a bootstrap interval says how often the
tuned reply is preferred. 0.5 means no preference.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from evals.stats import BootstrapCI, paired_win_rate


class RewardJudge:
    """A reward model that maps (prompt, reply) pairs to one scalar each; higher is better."""

    def __init__(self, path: str | Path, batch_size: int = 8, max_length: int = 1024):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Keep the end of long inputs: the reply's last token is where the score is read.
        self.tokenizer.truncation_side = "left"
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(path), dtype=torch.float32, use_safetensors=True)
        if self.model.config.num_labels != 1:
            raise ValueError(f"a reward model has one output (num_labels=1), {path} has {self.model.config.num_labels}")
        if self.model.config.pad_token_id is None:  # the head finds the last real token by the pad id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def format(self, prompt: str | list[dict], reply: str) -> str:
        """The text the reward model reads: its own chat format when it has one, as in reward-model training.
        `prompt` is a user message, or the prompt's turns."""
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template([*turns, {"role": "assistant", "content": reply}], tokenize=False)
        return "\n\n".join([*(t["content"] for t in turns), reply])

    @torch.no_grad()
    def score(self, prompts: list[str] | list[list[dict]], replies: list[str]) -> np.ndarray:
        """One reward per (prompt, reply) pair, in input order."""
        if len(prompts) != len(replies):
            raise ValueError(f"{len(prompts)} prompts but {len(replies)} replies")
        texts = [self.format(p, r) for p, r in zip(prompts, replies)]
        # A chat-templated text already carries its special tokens.
        add_special = not self.tokenizer.chat_template
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        scores = np.zeros(len(texts), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            idx = order[i:i + self.batch_size]
            # Right padding: Llama-style models take positions from the index, so left padding would shift them.
            enc = self.tokenizer([texts[j] for j in idx], padding=True, padding_side="right", truncation=True,
                                 max_length=self.max_length, add_special_tokens=add_special, return_tensors="pt")
            logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            scores[idx] = logits[:, 0].float().numpy()
        return scores


def win_rate(judge: RewardJudge, prompts: list[str], base_replies: list[str], tuned_replies: list[str], *,
             n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0, tie_tol: float = 0.0) -> BootstrapCI:
    """Share of prompts where the judge scores the tuned reply above the base reply (ties half), with a CI."""
    if not len(prompts) == len(base_replies) == len(tuned_replies):
        raise ValueError(f"need one base and one tuned reply per prompt: {len(prompts)} prompts, "
                         f"{len(base_replies)} base, {len(tuned_replies)} tuned")
    base = judge.score(prompts, base_replies)
    tuned = judge.score(prompts, tuned_replies)
    return paired_win_rate(base, tuned, tie_tol=tie_tol, n_resamples=n_resamples, confidence=confidence, seed=seed)
