import itertools
import json
import random
from collections import defaultdict

import pytest

from evals.neardup_benchmark import (
    LOCALES, RATES, REAL_SOURCES, SUPPORT, Doc, LocaleWriter, add_noise, generate, generate_real, jaccard,
    jaccard_distributions, load_real, main, n_edits, run_near_dedup, score, shingles, sweep,
)  # fmt: skip
from tasks.data.text import normalise_text, words

FIELDS = {"id", "text", "cluster", "kind", "edit_rate", "edits", "locale"}


def _words(text: str) -> list[str]:
    return words(normalise_text(text))


def _osa(a: list[str], b: list[str]) -> int:
    """Word edit distance with adjacent transpositions (optimal string alignment), written out independently."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
            d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


@pytest.fixture(scope="module")
def rows():
    return generate(seed=5, n_bases=27)


def test_same_seed_same_set_other_seed_other_set(rows):
    assert generate(seed=5, n_bases=27) == rows
    assert [r["text"] for r in generate(seed=6, n_bases=27)] != [r["text"] for r in rows]


def _check_clusters(rows):
    """Each hard negative is a cluster of its own; every other cluster is a base followed by one copy per rate."""
    by_cluster = defaultdict(list)
    for i, r in enumerate(rows):
        by_cluster[r["cluster"]].append(i)
    for idx in by_cluster.values():
        first = rows[idx[0]]
        if first["kind"] == "distinct":
            assert len(idx) == 1
        else:
            assert first["kind"] == "base" and sorted(rows[i]["edit_rate"] for i in idx[1:]) == list(RATES)
    return by_cluster


def test_rows_clusters_and_order(rows):
    assert all(set(r) == FIELDS for r in rows)
    kinds = defaultdict(int)
    for r in rows:
        kinds[r["kind"]] += 1
    assert dict(kinds) == {"base": 27, "near": 27 * len(RATES), "distinct": 27}
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["locale"] for r in rows} == set(LOCALES)
    by_cluster = _check_clusters(rows)
    contiguous = sum(idx == list(range(idx[0], idx[0] + len(idx))) for idx in by_cluster.values() if len(idx) > 1)
    assert contiguous < 5  # clusters are interleaved, not one block each
    for r in rows:
        if r["kind"] != "near":
            assert 20 <= len(_words(r["text"])) <= 150


def test_near_rows_carry_exactly_their_word_edits(rows):
    base = {r["cluster"]: r for r in rows if r["kind"] == "base"}
    noisy = 0
    for r in rows:
        if r["kind"] != "near":
            continue
        b = base[r["cluster"]]
        n = len(_words(b["text"]))
        assert r["edits"] == n_edits(r["edit_rate"], n) == max(1, int(r["edit_rate"] * n + 0.5))
        assert _osa(_words(b["text"]), _words(r["text"])) == r["edits"]
        assert r["text"] != b["text"] and r["locale"] == b["locale"]
        noisy += any(s in r["text"] for s in ("\n", "\t", "  ")) or r["text"] != r["text"].rstrip()
    assert noisy > len(rows) // 3  # formatting noise shows up, beyond the word edits


def test_formatting_noise_keeps_the_words():
    text = "Hello, my name is Jörg Straße and I ordered the Kettle K340 on May 3, 2024. It's broken! Bye."
    for seed in range(50):
        doc = Doc(text)
        add_noise(doc, random.Random(seed))
        assert _words(doc.text()) == _words(text)
    assert Doc(text).text() == text


def test_n_edits_rounds_half_up_with_a_floor_of_one():
    assert [n_edits(0.05, 50), n_edits(0.01, 20), n_edits(0.10, 150), n_edits(0.03, 50)] == [3, 1, 15, 2]


def _same_template_pairs(rows):
    groups = defaultdict(list)
    for r in rows:
        groups[(r["locale"], r["cluster"].split("-")[0])].append(r)
    return [(a, b) for g in groups.values() for a, b in itertools.combinations(g, 2)]


def test_distinct_rows_share_template_words_but_are_not_duplicates(rows):
    # Distinct texts against each other and against the bases of the same locale and template.
    pairs = _same_template_pairs([r for r in rows if r["kind"] in ("distinct", "base")])
    assert pairs
    for a, b in pairs:
        assert jaccard(shingles(a["text"], 3), shingles(b["text"], 3)) < 0.5, (a["id"], b["id"])
    # Support messages of one locale: many from the same templates, sharing fixed words yet < 0.5 at k=3.
    for locale in SUPPORT:
        w, rng = LocaleWriter(locale, 1), random.Random(1)
        msgs = [w.support_message(rng) for _ in range(15)]
        j1 = [jaccard(shingles(a, 1), shingles(b, 1)) for a, b in itertools.combinations(msgs, 2)]
        j3 = [jaccard(shingles(a, 3), shingles(b, 3)) for a, b in itertools.combinations(msgs, 2)]
        assert sum(j1) / len(j1) > 0.12 and max(j3) < 0.5, locale
        assert all(set(_words(a)) & set(_words(b)) for a, b in itertools.combinations(msgs, 2))


def _toy_rows():
    def row(rid, cluster, kind, rate=None):
        return {"id": rid, "text": f"text of {rid}", "cluster": cluster, "kind": kind, "edit_rate": rate,
                "edits": 0 if rate is None else 1, "locale": "en_US"}  # fmt: skip

    return [row("a0", "A", "base"), row("b0", "B", "base"), row("a1", "A", "near", 0.01), row("d0", "D0", "distinct"),
            row("a2", "A", "near", 0.05), row("b1", "B", "near", 0.01), row("a3", "A", "near", 0.10),
            row("d1", "D1", "distinct")]  # fmt: skip


def test_score_on_a_hand_made_verdict_list():
    rows = _toy_rows()
    # a1 -> a0 hit; a2 missed; b1 -> d0 false merge (and a miss); a3 -> a1 hit (same cluster); d1 -> d0 false merge
    res = score(rows, [None, None, 0, None, None, 3, 2, 3])
    assert res["recall"] == {"0.01": 0.5, "0.05": 0.0, "0.1": 1.0}
    assert res["recall_le_5pct"] == pytest.approx(1 / 3, abs=1e-4)
    assert res["precision"] == 0.5 and res["false_merges"] == 2
    assert [(e["id"], e["kept_id"]) for e in res["false_merge_examples"]] == [("b1", "d0"), ("d1", "d0")]
    assert res["false_merge_examples"][0]["kept_text"] == "text of d0"
    assert res["counts"] == {"rows": 8, "base": 2, "near": 4, "distinct": 2, "flagged": 4,
                             "near_per_rate": {"0.01": 2, "0.05": 1, "0.1": 1}, "distinct_flagged": 1}  # fmt: skip
    perfect = score(rows, [None, None, 0, None, 0, 1, 0, None])
    assert perfect["recall_le_5pct"] == 1.0 and perfect["precision"] == 1.0 and perfect["false_merges"] == 0
    with pytest.raises(ValueError, match="earlier row"):
        score(rows, [None, 2, None, None, None, None, None, None])


def test_dedup_run_sweep_and_cli(tmp_path, capsys):
    rows = generate(seed=0, n_bases=9)
    dup = run_near_dedup(rows, {"shingle_size": 1, "threshold": 0.5})
    assert len(dup) == len(rows) and all(d is None or d < i for i, d in enumerate(dup))
    assert score(rows, dup)["recall"]["0.01"] > 0.5  # near copies of a 1% edit are ~0.98 similar as word sets
    grid = [{"shingle_size": k, "num_perm": 32, "threshold": 0.5} for k in (1, 3)]
    out = sweep(rows, grid)
    assert [(o["shingle_size"], o["num_perm"]) for o in out] == [(1, 32), (3, 32)]
    assert all(0 <= o["precision"] <= 1 and set(o["recall"]) == {f"{r:g}" for r in RATES} for o in out)
    dist = jaccard_distributions(rows, sizes=(1, 3))
    assert dist[1]["near@0.01"]["median"] > dist[3]["near@0.1"]["median"]
    assert dist[3]["distinct(max)"]["max"] < 0.5
    plot = tmp_path / "recall.png"
    main(["--n-bases", "9", "--threshold", "0.5", "--plot", str(plot)])
    printed = capsys.readouterr().out
    assert plot.stat().st_size > 1000 and "recall (edit rate <= 5%)" in printed
    assert json.loads(printed[printed.index("\n{") :])["config"]["threshold"] == 0.5


# ---------------------------------------------------------------------------------------------- the real-text set


@pytest.fixture(scope="module")
def real_data_dir(shared_data):
    """The reference data (the project fixture fails, never skips, when it is missing)."""
    return shared_data


@pytest.fixture(scope="module")
def real_rows(real_data_dir):
    return generate_real(real_data_dir, seed=3, n_bases=12)


def _source(row):
    return row["cluster"].split("-")[1]


def test_real_set_is_deterministic(real_data_dir, real_rows):
    assert generate_real(real_data_dir, seed=3, n_bases=12) == real_rows
    assert [r["text"] for r in generate_real(real_data_dir, seed=4, n_bases=12)] != [r["text"] for r in real_rows]


def test_real_rows_clusters_and_order(real_rows):
    assert all(set(r) == FIELDS and r["locale"] == "en_real" and r["cluster"].startswith("real-") for r in real_rows)
    kinds = defaultdict(int)
    for r in real_rows:
        kinds[(_source(r), r["kind"])] += 1
    assert dict(kinds) == {(s, k): n for s in REAL_SOURCES for k, n in (("base", 4), ("near", 4 * len(RATES)),
                                                                         ("distinct", 4))}  # fmt: skip
    assert len({r["id"] for r in real_rows}) == len(real_rows)
    _check_clusters(real_rows)
    for r in real_rows:
        if r["kind"] != "near":
            assert 20 <= len(_words(r["text"])) <= 150


def test_real_near_copies_carry_their_edits(real_rows):
    base = {r["cluster"]: r for r in real_rows if r["kind"] == "base"}
    for r in real_rows:
        if r["kind"] != "near":
            continue
        b = base[r["cluster"]]
        assert r["edits"] >= 1 and r["text"] != b["text"]
        assert r["edits"] == n_edits(r["edit_rate"], len(_words(b["text"])))
        assert _osa(_words(b["text"]), _words(r["text"])) == r["edits"]


def test_real_distinct_texts_are_same_source_and_group_but_not_duplicates(real_data_dir, real_rows):
    pools = load_real(real_data_dir)
    where = defaultdict(list)  # text -> the records it occurs in
    for name in ("truthfulqa", "mmlu", "hh", "hh_rejected"):
        for t in pools[name]:
            where[(name, t.text)].append(t)
    negatives = {"truthfulqa": "truthfulqa", "mmlu": "mmlu", "hh": "hh_rejected"}
    bases = {r["cluster"]: r for r in real_rows if r["kind"] == "base"}
    distinct = [r for r in real_rows if r["kind"] == "distinct"]
    for d in distinct:
        src = _source(d)
        b = bases[d["cluster"].replace("-x", "-")]
        assert _source(b) == src
        base_recs, neg_recs = where[(src, b["text"])], where[(negatives[src], d["text"])]
        assert base_recs and neg_recs, d["id"]  # the texts really come from that source
        # Another record (never the same HH pair's rejected transcript), and for MMLU / TruthfulQA the same
        # subject / category.
        assert not {t.key for t in base_recs} & {t.key for t in neg_recs}
        if src in ("mmlu", "truthfulqa"):
            assert {t.group for t in base_recs} & {t.group for t in neg_recs}, d["id"]
        else:
            assert d["text"].startswith("Human:") and b["text"].startswith("Human:")
        assert jaccard(shingles(d["text"], 3), shingles(b["text"], 3)) < 0.5, d["id"]
    # No two bases / distinct texts are (near-)copies of each other.
    kept = [r for r in real_rows if r["kind"] != "near"]
    sh = [shingles(r["text"], 3) for r in kept]
    for (a, sa), (b, sb) in itertools.combinations(zip(kept, sh), 2):
        assert jaccard(sa, sb) < 0.5, (a["id"], b["id"])


def test_real_hh_negatives_mostly_share_the_opening_words(real_data_dir):
    rows = generate_real(real_data_dir, seed=0, n_bases=60)
    base = {r["cluster"]: r for r in rows if r["kind"] == "base"}
    pairs = [(base[r["cluster"].replace("-x", "-")], r) for r in rows if r["kind"] == "distinct" and _source(r) == "hh"]
    same = sum(_words(b["text"])[:4] == _words(d["text"])[:4] for b, d in pairs)  # "human" + 3 words
    assert len(pairs) == 20 and same >= 10


def test_real_cli(real_data_dir, capsys):
    main(["--real", "--data-dir", str(real_data_dir), "--n-bases", "6"])
    printed = capsys.readouterr().out
    assert "recall (edit rate <= 5%)" in printed
    out = json.loads(printed[printed.index("\n{") :])
    assert out["set"] == "real" and out["counts"]["base"] == 6 and out["counts"]["distinct"] == 6


def test_defaults_catch_five_percent_edits_and_never_merge_distinct_texts():
    """The data stage's defaults on a fresh Faker set (a seed the defaults were not chosen on)."""
    rows = generate(seed=11, n_bases=80)
    result = score(rows, run_near_dedup(rows))
    assert result["recall_le_5pct"] >= 0.95 and result["precision"] >= 0.99 and result["false_merges"] == 0
