import numpy as np
import pytest
import sacrebleu

from evals.metrics import (
    bleu, compute_all, degenerate_rate, exact_match, is_degenerate, longest_repeat, normalize_answer,
    repeated_ngram_fraction, rouge_l,
)


def test_normalize_answer_strips_case_punctuation_articles():
    assert normalize_answer("  The Eiffel-Tower, in  Paris! ") == "eiffeltower in paris"
    assert normalize_answer("An apple") == "apple"


def test_exact_match_per_item_and_multiple_references():
    preds = ["Paris.", "the answer is 4", "Blue"]
    refs = ["paris", ["4", "four"], ["red", "BLUE!"]]
    res = exact_match(preds, refs)
    np.testing.assert_array_equal(res.per_item, [1.0, 0.0, 1.0])
    assert res.value == pytest.approx(2 / 3)


def test_rouge_l_known_values():
    # LCS "the cat sat" = 3 tokens: P = 3/3, R = 3/4 -> F = 6/7
    res = rouge_l(["the cat sat", "completely different"], ["the cat sat down", "the cat sat down"])
    assert res.per_item[0] == pytest.approx(6 / 7)
    assert res.per_item[1] == 0.0
    assert res.value == pytest.approx(3 / 7)
    # the best of several references counts
    assert rouge_l(["hello world"], [["nope", "hello world"]]).per_item[0] == pytest.approx(1.0)


def test_bleu_corpus_is_pooled_and_per_item_is_sentence_level():
    preds = ["the cat sat on the mat", "a quick brown fox jumps"]
    refs = ["the cat sat on the mat", "the quick brown fox jumped over"]
    res = bleu(preds, refs)
    assert res.per_item[0] == pytest.approx(1.0)  # 0-1, beside ROUGE-L and exact match
    assert 0 < res.per_item[1] < 1
    assert res.per_item[1] == pytest.approx(sacrebleu.sentence_bleu(preds[1], [refs[1]]).score / 100)
    assert res.value == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score / 100)
    assert res.value != pytest.approx(res.per_item.mean())  # pooled counts, not a sentence average


def test_bleu_pads_variable_reference_counts():
    res = bleu(["hi there friend", "good morning to you"], [["hi there friend", "hello"], "good morning to you"])
    assert res.value == pytest.approx(1.0)
    np.testing.assert_allclose(res.per_item, [1.0, 1.0])


def test_compute_all_and_length_mismatch():
    out = compute_all(["a b c d"], ["a b c d"])
    assert set(out) == {"exact_match", "rougeL", "bleu"}
    assert out["exact_match"].value == 1.0 and out["rougeL"].value == pytest.approx(1.0)
    assert out["bleu"].value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        exact_match(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one reference"):
        rouge_l(["a"], [[]])


LOOP = "I can help. I can help. I can help."
NORMAL = [
    "The cat sat on the mat and looked at the dog.",
    "Sure! Here is how: 1. Open the app. 2. Open the settings. 3. Open the menu.",
    "No, no, no: the snapshot is taken before the upgrade, not after it.",
    "",
]


def test_longest_repeat_counts_back_to_back_copies():
    assert longest_repeat(LOOP) == (3, 3)  # "i can help" x3; case and punctuation ignored
    assert longest_repeat("a b c d e f a b c d e f") == (2, 6)
    assert longest_repeat("no, no, no, I disagree") == (3, 1)
    assert longest_repeat("no, no, no, I disagree", min_words=2) == (1, 0)
    assert longest_repeat(NORMAL[0]) == (1, 0) and longest_repeat("") == (1, 0)


def test_repeated_ngram_fraction():
    assert repeated_ngram_fraction(LOOP) == pytest.approx(4 / 7)  # 7 trigrams, 3 distinct
    assert repeated_ngram_fraction(NORMAL[0]) == 0.0
    assert repeated_ngram_fraction("too short") == 0.0


def test_is_degenerate_flags_loops_not_normal_text():
    assert is_degenerate(LOOP)
    assert is_degenerate("Thank you " * 5)
    assert is_degenerate("very " * 6 + "good")  # one word needs six copies...
    assert not is_degenerate("very " * 5 + "good")  # ...five is emphasis
    # a 10-word loop twice back to back and once more after a variation: caught by the trigram share, not the run
    period = "the answer depends on the version you have installed here "
    looping = period * 2 + "so " + period
    assert longest_repeat(looping)[0] == 2 and repeated_ngram_fraction(looping) > 0.5 and is_degenerate(looping)
    assert not any(is_degenerate(t) for t in NORMAL)


def test_degenerate_rate():
    assert degenerate_rate([LOOP, *NORMAL[:3]]) == pytest.approx(0.25)
    assert degenerate_rate([]) == 0.0
