import csv
import math
from collections import Counter

import pytest
import torch

from evals.general_text import general_text_samples, text_perplexity
from tasks.model import load_model, load_tokenizer

TEXTS = ["The mitochondria is the powerhouse of the cell, and it makes ATP from glucose and oxygen.", "Paris is in France."]


@pytest.fixture(scope="module")
def val_subjects(shared_data) -> dict[str, set[str]]:
    """Every expected text mapped to its subjects (2 texts occur in two medical subjects), read independently."""
    out: dict[str, set[str]] = {}
    for path in sorted((shared_data / "mmlu" / "val").glob("*_val.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for q, a, b, c, d, letter in csv.reader(f):
                text = f"{q.strip()} {dict(A=a, B=b, C=c, D=d)[letter.strip()].strip()}"
                out.setdefault(text, set()).add(path.name[: -len("_val.csv")])
    return out


def _subject_counts(texts, val_subjects) -> Counter:
    """Per-subject counts of the texts whose subject is unambiguous."""
    return Counter(next(iter(val_subjects[t])) for t in texts if len(val_subjects[t]) == 1)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def test_samples_are_question_plus_correct_answer_one_subject_per_round(shared_data, val_subjects):
    texts = general_text_samples(shared_data, n=57, seed=0)
    assert len(texts) == 57 and all(t in val_subjects for t in texts)
    assert set().union(*(val_subjects[t] for t in texts)) == set().union(*val_subjects.values())
    assert set(_subject_counts(texts, val_subjects).values()) == {1}  # no subject twice in the first round
    counts = _subject_counts(general_text_samples(shared_data, n=120, seed=0), val_subjects)
    ambiguous = {"clinical_knowledge", "college_medicine"}
    assert {n for s, n in counts.items() if s not in ambiguous} == {2, 3} and max(counts.values()) <= 3


def test_samples_are_seeded_and_capped_at_the_split(shared_data, val_subjects):
    assert general_text_samples(shared_data, 30, seed=1) == general_text_samples(shared_data, 30, seed=1)
    assert general_text_samples(shared_data, 30, seed=1) != general_text_samples(shared_data, 30, seed=2)
    everything = general_text_samples(shared_data, 10**6, seed=0)
    assert len(everything) == 1542 and set(everything) == set(val_subjects)  # every val row, once
    with pytest.raises(FileNotFoundError):
        general_text_samples(shared_data / "missing", 5, seed=0)


def _by_hand(model, tokenizer, texts) -> float:
    nll, tokens = 0.0, 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
        nll -= logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]].sum().item()
        tokens += ids.shape[1] - 1
    return math.exp(nll / tokens)


def test_perplexity_is_exp_mean_nll_over_all_tokens(tiny):
    model, tokenizer = tiny
    expected = _by_hand(model, tokenizer, TEXTS)
    assert 1000 < expected < 10**6  # a random model over a 49k vocabulary
    assert text_perplexity(model, tokenizer, TEXTS) == pytest.approx(expected, rel=1e-5)


def test_padding_does_not_change_perplexity(tiny):
    model, tokenizer = tiny
    lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    assert lengths[0] > lengths[1] + 5  # the batch of 2 really pads the short text
    one = text_perplexity(model, tokenizer, TEXTS, batch_size=1)
    two = text_perplexity(model, tokenizer, TEXTS, batch_size=2)
    assert math.log(one) == pytest.approx(math.log(two), abs=1e-6)
    assert one == pytest.approx(two, rel=1e-4)


def test_long_texts_are_truncated_and_empty_input_refused(tiny):
    model, tokenizer = tiny
    head = tokenizer.decode(tokenizer(TEXTS[0])["input_ids"][:4])
    assert text_perplexity(model, tokenizer, [TEXTS[0]], max_length=4) == pytest.approx(
        _by_hand(model, tokenizer, [head]), rel=1e-5)
    with pytest.raises(ValueError, match="no texts"):
        text_perplexity(model, tokenizer, [])
