import numpy as np

from tasks.data.ngrams import WordHasher, ngram_hashes, shingle_hashes


def test_ngrams_never_straddle_two_docs():
    h, starts = WordHasher().flat([["a", "b", "c"], ["d", "e"], ["a", "b", "c", "d"]])
    hs, doc, pos = ngram_hashes(h, starts, 3)
    assert doc.tolist() == [0, 2, 2] and pos.tolist() == [0, 0, 1]
    assert hs[0] == hs[1]  # "a b c" hashes the same wherever it occurs
    assert len(set(hs.tolist())) == 2


def test_short_docs_get_one_whole_doc_shingle():
    h, starts = WordHasher().flat([["a", "b", "c", "d"], ["x"], ["p", "q"]])
    hs, doc = shingle_hashes(h, starts, 3)
    assert doc.tolist() == [0, 0, 1, 2]
    assert np.unique(hs).size == 4
