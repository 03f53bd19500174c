"""Generation metrics on maintained implementations: exact match, ROUGE-L (rouge-score), BLEU (sacrebleu).

Each metric returns the corpus value *and* per-item scores, because the drift gate and the reports
need per-item arrays for the paired bootstrap (`evals.stats`). Every reference may be one string or
a list of acceptable strings; an item scores against its best-matching reference.
"""
from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

References = Sequence[str | Sequence[str]]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class MetricResult:
    """`value` is the corpus-level score; `per_item[i]` scores prediction i (same scale)."""

    value: float
    per_item: np.ndarray


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles, collapse whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def _ref_lists(predictions: Sequence[str], references: References) -> list[list[str]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not r for r in refs):
        raise ValueError("every item needs at least one reference")
    return refs


def exact_match(predictions: Sequence[str], references: References) -> MetricResult:
    """1 when the normalised prediction equals any normalised reference, else 0."""
    refs = _ref_lists(predictions, references)
    per_item = np.array(
        [float(any(normalize_answer(p) == normalize_answer(r) for r in rs)) for p, rs in zip(predictions, refs)]
    )
    return MetricResult(float(per_item.mean()), per_item)


def rouge_l(predictions: Sequence[str], references: References, *, use_stemmer: bool = True) -> MetricResult:
    """ROUGE-L F-measure per item (best reference); the corpus value is their mean, as is conventional."""
    refs = _ref_lists(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    per_item = np.array([scorer.score_multi(rs, p)["rougeL"].fmeasure for p, rs in zip(predictions, refs)])
    return MetricResult(float(per_item.mean()), per_item)


def bleu(predictions: Sequence[str], references: References, *, tokenize: str = "13a") -> MetricResult:
    """sacreBLEU on its usual 0-100 scale.

    The corpus value pools n-gram counts over all items (the real BLEU, not a mean of sentences);
    per-item scores are smoothed sentence BLEU, which is what a per-item bootstrap can resample.
    """
    refs = _ref_lists(predictions, references)
    width = max(len(rs) for rs in refs)
    # sacrebleu takes one stream per reference slot; None pads items with fewer references.
    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(width)]
    corpus = sacrebleu.corpus_bleu(list(predictions), streams, tokenize=tokenize).score
    per_item = np.array(
        [sacrebleu.sentence_bleu(p, rs, tokenize=tokenize).score for p, rs in zip(predictions, refs)]
    )
    return MetricResult(float(corpus), per_item)


def compute_all(predictions: Sequence[str], references: References) -> dict[str, MetricResult]:
    """All three metrics, keyed as they are logged: exact_match, rougeL, bleu."""
    return {
        "exact_match": exact_match(predictions, references),
        "rougeL": rouge_l(predictions, references),
        "bleu": bleu(predictions, references),
    }
