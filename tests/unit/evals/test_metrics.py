import numpy as np
import pytest
import sacrebleu

from evals.metrics import bleu, compute_all, exact_match, normalize_answer, rouge_l


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
    assert res.per_item[0] == pytest.approx(100.0)
    assert 0 < res.per_item[1] < 100
    assert res.value == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert res.value != pytest.approx(res.per_item.mean())  # pooled counts, not a sentence average


def test_bleu_pads_variable_reference_counts():
    res = bleu(["hi there friend", "good morning to you"], [["hi there friend", "hello"], "good morning to you"])
    assert res.value == pytest.approx(100.0)
    np.testing.assert_allclose(res.per_item, [100.0, 100.0])


def test_compute_all_and_length_mismatch():
    out = compute_all(["a b c d"], ["a b c d"])
    assert set(out) == {"exact_match", "rougeL", "bleu"}
    assert out["exact_match"].value == 1.0 and out["rougeL"].value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        exact_match(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one reference"):
        rouge_l(["a"], [[]])
