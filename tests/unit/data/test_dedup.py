import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from tasks.data.config import NearDedupConfig
from tasks.data.dedup import ExactDeduper, NearDeduper, exact_key
from tasks.data.ngrams import WordHasher, ngram_hashes
from tasks.data.text import canonical, words

BASE = ("the quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence "
        "and thinks about the harvest that is coming next week if the weather holds").split()  # fmt: skip


def _row(i, text):
    return {"id": f"s:{i}", "source": "s", "messages": [{"role": "user", "content": "Tell me a story"},
                                                        {"role": "assistant", "content": text}]}  # fmt: skip


def test_exact_dedup_ignores_case_width_and_whitespace():
    ex = ExactDeduper()
    a, b = _row(1, "Ｈｅｌｌｏ   World"), _row(2, "hello world")
    assert ex.first_of("s:1", exact_key(canonical(a))) is None
    assert ex.first_of("s:2", exact_key(canonical(b))) == "s:1"
    assert ex.first_of("s:3", exact_key(canonical(_row(3, "hello, world")))) is None


def test_signatures_equal_datasketch_minhash():
    nd = NearDeduper(NearDedupConfig(shingle_size=3, num_perm=64), WordHasher())
    docs = [BASE, BASE[:5], ["one"]]
    sig = nd.signatures(docs)
    h, starts = nd.hasher.flat(docs)
    for d, doc in enumerate(docs):
        hs, _, _ = ngram_hashes(h[starts[d] : starts[d + 1]], np.array([0, len(doc)]), min(3, len(doc)))
        ref = MinHash(num_perm=64, seed=1, hashfunc=lambda v: int(v) >> 32)
        ref.update_batch(hs.tolist())
        assert np.array_equal(sig[d], ref.hashvalues), d


def test_near_duplicate_cluster_is_found_and_distinct_rows_survive():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    distinct = [" ".join(rng.choice(vocab, 40)) for _ in range(50)]
    near_a = " ".join(BASE + ["indeed"])
    near_b = " ".join(BASE[:-1] + ["holds", "up"])
    texts = [" ".join(BASE), *distinct[:25], near_a, *distinct[25:], near_b]
    rows = [_row(i, t) for i, t in enumerate(texts)]
    nd = NearDeduper(NearDedupConfig(), WordHasher())
    verdicts = nd.run([r["id"] for r in rows], [words(canonical(r)) for r in rows])
    dups = {rows[i]["id"]: v[0] for i, v in enumerate(verdicts) if v is not None}
    assert dups == {"s:26": "s:0", "s:52": "s:0"}
    (cluster,) = nd.report()
    assert cluster["kept"] == "s:0" and [m["id"] for m in cluster["removed"]] == ["s:26", "s:52"]
    assert all(0.8 <= m["jaccard"] < 1.0 for m in cluster["removed"])


def _shingles(doc, k):
    return {tuple(doc[i : i + k]) for i in range(len(doc) - k + 1)} or {tuple(doc)}


def test_decisions_match_datasketch_lsh_verified_by_exact_jaccard():
    """Same sketches, same band split: our banding finds what datasketch's index finds, and the
    exact Jaccard of the shingle sets (not the sketch estimate) decides."""
    rng = np.random.default_rng(1)
    base = list(rng.choice([f"w{i}" for i in range(300)], 60))
    docs = [base[: 60 - k] + list(rng.choice(["x", "y", "z"], k)) for k in range(0, 30, 2)]
    cfg = NearDedupConfig(threshold=0.5, num_perm=32, shingle_size=2, max_edit_fraction=1.0)  # Jaccard alone
    nd = NearDeduper(cfg, WordHasher())
    sig = nd.signatures(docs)
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, weights=(0.1, 0.9))
    assert (lsh.b, lsh.r) == (nd.bands, nd.rows_per_band)
    expected = []
    for i, s in enumerate(sig):
        m = MinHash(num_perm=cfg.num_perm, hashvalues=s, scheme="affine32")
        sims = [len(_shingles(docs[i], 2) & _shingles(docs[c], 2)) / len(_shingles(docs[i], 2) | _shingles(docs[c], 2))
                for c in lsh.query(m)]  # fmt: skip
        if sims and max(sims) >= cfg.threshold:
            expected.append((i, round(max(sims), 6)))
        else:
            lsh.insert(i, m)
    got = [(i, round(v[1], 6)) for i, v in enumerate(nd.run([str(i) for i in range(len(docs))], docs)) if v is not None]
    assert got == expected and len(got) > 3


def test_a_shared_passage_with_another_question_is_not_a_duplicate_but_scattered_edits_are():
    """Jaccard alone merges both; the word edit fraction tells a replaced block from scattered edits."""
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(3000)]
    passage = list(rng.choice(vocab, 80))
    first = passage + list(rng.choice(vocab, 20))  # question 1 under the passage
    other_question = passage + list(rng.choice(vocab, 20))  # question 2: 20% of words differ, in one block
    edited = list(first)
    for at in (10, 40, 70, 90):  # 4% of words replaced, scattered
        edited[at] = "changed"
    docs, ids = [first, other_question, edited], ["q1", "q2", "q1-edited"]
    assert NearDeduper(NearDedupConfig(max_edit_fraction=1.0), WordHasher()).run(ids, docs)[1] is not None
    verdicts = NearDeduper(NearDedupConfig(), WordHasher()).run(ids, docs)
    assert verdicts[1] is None and verdicts[2] is not None and verdicts[2][0] == "q1"


def test_batches_give_the_same_answer_as_one_pass():
    """The data stage streams rows through in batches: state (index, sketches, sets) carries over."""
    rng = np.random.default_rng(2)
    vocab = [f"w{i}" for i in range(400)]
    bases = [list(rng.choice(vocab, 50)) for _ in range(30)]
    docs = []
    for _ in range(120):
        d = list(bases[rng.integers(len(bases))])
        for _ in range(rng.integers(0, 2)):
            d[rng.integers(len(d))] = str(rng.choice(vocab))
        docs.append(d)
    ids = [str(i) for i in range(len(docs))]
    one = NearDeduper(NearDedupConfig(), WordHasher()).run(ids, docs)
    nd = NearDeduper(NearDedupConfig(), WordHasher())
    batched = [v for lo in range(0, len(docs), 17) for v in nd.run(ids[lo : lo + 17], docs[lo : lo + 17])]
    assert batched == one and sum(v is not None for v in one) >= 60
    assert all(m["estimated"] > 0 and m["jaccard"] >= NearDedupConfig().threshold for c in nd.report() for m in c["removed"])


def test_word_hashes_are_content_based_and_stable():
    a, b = WordHasher(), WordHasher()
    a.flat([["zebra"]])
    ha, _ = a.flat([["apple", "zebra"]])
    hb, _ = b.flat([["apple", "zebra"]])
    assert ha.tolist() == hb.tolist() == [xxhash.xxh3_64_intdigest(b"apple"), xxhash.xxh3_64_intdigest(b"zebra")]
