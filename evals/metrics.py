"""Generation metrics on maintained implementations: exact match, ROUGE-L (rouge-score), BLEU (sacrebleu).

Each metric returns the corpus value *and* per-item scores, because the drift gate and the reports
need per-item arrays for the paired bootstrap (`evals.stats`). Every reference may be one string or
a list of acceptable strings; an item scores against its best-matching reference. All three are on
0-1, so they share a table and a drift threshold scale.

`is_degenerate` flags looping generations (the same phrase over and over), which reference metrics
only see as a low score among others.
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
_WORD = re.compile(r"\w+")


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
    """sacreBLEU divided by 100, so it sits on 0-1 beside ROUGE-L and exact match.

    The corpus value pools n-gram counts over all items (the real BLEU, not a mean of sentences);
    per-item scores are smoothed sentence BLEU, which is what a per-item bootstrap can resample.
    """
    refs = _ref_lists(predictions, references)
    width = max(len(rs) for rs in refs)
    # sacrebleu takes one stream per reference slot; None pads items with fewer references.
    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(width)]
    corpus = sacrebleu.corpus_bleu(list(predictions), streams, tokenize=tokenize).score / 100
    per_item = np.array(
        [sacrebleu.sentence_bleu(p, rs, tokenize=tokenize).score / 100 for p, rs in zip(predictions, refs)]
    )
    return MetricResult(float(corpus), per_item)


def compute_all(predictions: Sequence[str], references: References) -> dict[str, MetricResult]:
    """All three metrics, keyed as they are logged: exact_match, rougeL, bleu."""
    return {
        "exact_match": exact_match(predictions, references),
        "rougeL": rouge_l(predictions, references),
        "bleu": bleu(predictions, references),
    }


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def longest_repeat(text: str, *, min_words: int = 1, max_words: int = 32) -> tuple[int, int]:
    """(times, phrase length in words) of the phrase of `min_words`..`max_words` words repeated most often back to
    back, e.g. (3, 3) for "I can help. I can help. I can help."; (1, 0) when nothing repeats. Case and punctuation
    are ignored."""
    words = _words(text)
    best = (1, 0)
    for k in range(min_words, min(max_words, len(words) // 2) + 1):
        run = 0  # consecutive positions i with words[i] == words[i + k]: a run of r means r // k extra copies
        for i in range(len(words) - k):
            run = run + 1 if words[i] == words[i + k] else 0
            if run // k + 1 > best[0]:
                best = (run // k + 1, k)
    return best


def repeated_ngram_fraction(text: str, n: int = 3) -> float:
    """Share of the word n-grams that already occurred earlier in the text (0 for text shorter than n words)."""
    words = _words(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def is_degenerate(text: str, *, min_repeats: int = 3, max_repeated_fraction: float = 0.5,
                  min_ngrams: int = 8) -> bool:
    """A looping generation: a phrase of 2+ words back to back `min_repeats` times (one word needs twice as many:
    "no, no, no" is language), or over `max_repeated_fraction` of its trigrams seen before (loops with a longer
    period or small variations), judged only on texts of at least `min_ngrams` trigrams."""
    if longest_repeat(text, min_words=2)[0] >= min_repeats or longest_repeat(text)[0] >= 2 * min_repeats:
        return True
    words = _words(text)
    return len(words) - 2 >= min_ngrams and repeated_ngram_fraction(text) > max_repeated_fraction


def degenerate_rate(texts: Sequence[str]) -> float:
    """Share of `texts` that `is_degenerate` flags (0 for none)."""
    return float(np.mean([is_degenerate(t) for t in texts])) if texts else 0.0
