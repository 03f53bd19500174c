"""A trained classifier on labelled texts: accuracy and macro-F1, each with a bootstrap interval, against the
majority-class baseline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from evals.stats import mean_ci


def load_labelled(path: Path) -> list[dict]:
    """The {"text", "label"} rows of a JSONL file (a prepared classification split, or a test set)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if missing := [i for i, r in enumerate(rows) if not isinstance(r.get("text"), str) or r.get("label") is None]:
        raise ValueError(f"{path}: rows {missing[:5]} have no text or label (labelled texts expected)")
    return [{"text": r["text"], "label": str(r["label"])} for r in rows]


class Classifier:
    """A sequence-classification folder, loaded once: `classifier(texts)` -> one label per text."""

    def __init__(self, model_dir: Path, batch_size: int = 16, max_length: int = 256):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> list[str]:
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            out += [self.model.config.id2label[int(j)] for j in self.model(**enc).logits.argmax(-1)]
        return out


def classification_scores(truth: list[str], predicted: list[str], train_labels: list[str], *, n_resamples: int,
                          confidence: float, seed: int, prefix: str = "") -> dict[str, float]:
    """Accuracy and macro-F1 (over the labels present in `truth`) with percentile bootstrap intervals, and the
    accuracy of always answering the most frequent training label."""
    t, p = np.asarray(truth), np.asarray(predicted)
    acc = mean_ci((t == p).astype(float), n_resamples=n_resamples, confidence=confidence, seed=seed)
    labels = sorted(set(truth))
    rng = np.random.default_rng(seed)
    f1s = [f1_score(t[idx], p[idx], labels=sorted(set(t[idx])), average="macro", zero_division=0)  # labels drawn
           for idx in rng.integers(0, len(t), size=(n_resamples, len(t)))]
    alpha = 1 - confidence
    majority = max(set(train_labels), key=train_labels.count)
    return {f"{prefix}accuracy": acc.estimate, f"{prefix}accuracy_ci_low": acc.low,
            f"{prefix}accuracy_ci_high": acc.high,
            f"{prefix}macro_f1": float(f1_score(t, p, labels=labels, average="macro", zero_division=0)),
            f"{prefix}macro_f1_ci_low": float(np.quantile(f1s, alpha / 2)),
            f"{prefix}macro_f1_ci_high": float(np.quantile(f1s, 1 - alpha / 2)),
            f"{prefix}majority_baseline": float(np.mean(t == majority)), f"{prefix}n": float(len(t))}
