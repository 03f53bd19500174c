"""Labelled near-duplicate benchmark (generated, seeded) and a scorer for the data stage's MinHash near-dedup.

    python -m evals.neardup_benchmark                      # near-dedup at the config defaults: recall table + JSON
    python -m evals.neardup_benchmark --threshold 0.6 --shingle-size 3 --plot recall.png
    python -m evals.neardup_benchmark --sweep              # exact-Jaccard distributions + a shingle/threshold grid
    python -m evals.neardup_benchmark --real [--data-dir ../shared/data]  # held-out set from real English text

The set has one cluster per base text (Faker paragraphs in several languages, and customer-support messages
built from sentence templates): the base, then one perturbed copy per edit rate (word replacements, insertions,
deletions, transpositions, plus formatting noise a human would ignore). Hard negatives are texts of the same
locale and template that are NOT duplicates (another paragraph of the same length, another support message with
different fills and sentences); each is a cluster of its own, so merging one with anything is a false merge.

The near-dedup defaults were chosen on that Faker set. `generate_real` (CLI `--real`) builds a second, held-out set
of the same shape from real English text in the shared reference data (TruthfulQA, MMLU, HH-RLHF); see its docstring.
"""
import argparse
import csv
import functools
import gzip
import json
import math
import random
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.data.text import normalise_text, words

RATES = (0.01, 0.02, 0.03, 0.05, 0.07, 0.10)
LOCALES = ("en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL", "pl_PL", "da_DK")
LOW_RATE = 0.05  # "recall at <= 5%" is the headline number: a dedup should catch these
OPS = ("replace", "insert", "delete", "transpose")
SWEEP_SHINGLES = (1, 2, 3, 4, 5)
SWEEP_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)

_WORD = re.compile(r"\w+")
_ONE_LETTER = set("aeiouyàéèw")  # one-letter lorem entries that are real words (es_ES's list also has "d", "j", "p")

from evals.neardup_templates import PT_WORDS, SUPPORT  # noqa: E402  (the word lists and templates)

# ---------------------------------------------------------------------------------------------- base texts


class LocaleWriter:
    """One seeded Faker per locale plus the vocabulary and providers that really are that language."""

    def __init__(self, locale: str, seed: int) -> None:
        from faker import Faker

        self.locale = locale
        self.fake = Faker(locale)
        self.fake.seed_instance(seed)
        self.vocab = self._vocab()
        # Providers without a localised implementation fall back to en_US (it_IT and nl_NL jobs): skip those.
        self.fillers = [getattr(self.fake, m) for m in ("city", "company", "job", "name", "street_name")
                        if self._is_local(m)]  # fmt: skip

    def _is_local(self, method: str) -> bool:
        return getattr(self.fake, method).__self__.__class__.__module__.endswith(self.locale)

    def _vocab(self) -> list[str]:
        """Lorem words of the locale (PT_WORDS where Faker falls back to Latin), one \\w+ token each."""
        raw = self.fake.get_words_list() if self._is_local("word") else PT_WORDS if self.locale.startswith("pt") else None
        if raw is None:
            raise ValueError(f"{self.locale}: Faker has no lorem words in this language; pick another locale")
        ok = {w for w in raw if _WORD.fullmatch(w) and not w.isdigit() and (len(w) > 1 or w.lower() in _ONE_LETTER)}
        return sorted(ok)

    def word(self, rng: random.Random) -> str:
        return rng.choice(self.vocab)

    def paragraph(self, rng: random.Random, n_words: int) -> str:
        """Exactly n_words words: lorem sentences, some with a name, city, company or job mixed in."""
        sentences, total = [], 0
        while total < n_words:
            tokens = self.fake.sentence(nb_words=rng.randint(5, 14), ext_word_list=self.vocab).split()
            if self.fillers and rng.random() < 0.3:
                tokens.insert(rng.randint(1, len(tokens) - 1), rng.choice(self.fillers)())
            sentence = " ".join(tokens)
            sentences.append(sentence)
            total += len(_WORD.findall(sentence))
        return _truncate_words(" ".join(sentences), n_words)

    def support_message(self, rng: random.Random) -> str:
        """A customer-support message from this locale's templates with fresh fills."""
        t = SUPPORT[self.locale]
        fills = self._fills(rng, t)
        sentences = [rng.choice(t["greet"])] + rng.sample(t["body"], rng.randint(3, 6)) + [rng.choice(t["close"])]
        return " ".join(s.format(**fills) for s in sentences)

    def _fills(self, rng: random.Random, t: dict[str, Any]) -> dict[str, str]:
        f = self.fake

        def product() -> str:
            return f"{rng.choice(t['nouns'])} {f.last_name()} {rng.choice('ABCDKLMXZ')}{rng.randint(10, 999)}"

        return {
            "name": f.name(), "name2": f.name(), "city": f.city(), "street": f"{f.street_name()} {f.building_number()}",
            "company": f.company(), "job": f.job(), "phone": f.phone_number(), "product": product(),
            "product2": product(), "order": str(rng.randint(10**7, 10**8 - 1)), "days": str(rng.randint(2, 14)),
            "year": str(rng.randint(2012, 2023)), "amount": t["amount"].format(n=rng.randint(9, 900)),
            "date": t["date"].format(day=rng.randint(1, 28), month=f.month_name(), year=rng.randint(2023, 2025)),
        }  # fmt: skip


def _truncate_words(text: str, n_words: int) -> str:
    """The text up to its n-th word, ended with a full stop."""
    last = list(_WORD.finditer(text))[n_words - 1]
    return text[: last.end()] + "."


def _base_length(rng: random.Random) -> int:
    """20-150 words, most 40-100."""
    u = rng.random()
    return rng.randint(40, 100) if u < 0.7 else rng.randint(20, 39) if u < 0.85 else rng.randint(101, 150)


# ---------------------------------------------------------------------------------------------- near copies


class Doc:
    """A text as prefix + (word, glue after it)*: edits touch words, formatting noise touches case and glue."""

    def __init__(self, text: str) -> None:
        matches = list(_WORD.finditer(text))
        self.prefix = text[: matches[0].start()]
        ends = [m.start() for m in matches[1:]] + [len(text)]
        self.words = [m.group() for m in matches]
        self.glue = [text[m.end() : e] for m, e in zip(matches, ends)]

    def text(self) -> str:
        return self.prefix + "".join(w + g for w, g in zip(self.words, self.glue))


def n_edits(rate: float, n_words: int) -> int:
    """round(rate * n_words) half up (Python's round is half-to-even), at least 1."""
    return max(1, math.floor(rate * n_words + 0.5))


def plan_edits(doc_words: list[str], k: int, rng: random.Random) -> list[tuple[str, int]]:
    """k (op, position) pairs, op uniform over OPS, on separated positions.

    Each edit touches its own words and leaves an untouched word between it and the next, so edits cannot
    cancel or merge (delete + neighbouring insert = one replacement) and `edits` is the word edit distance.
    An insert at i goes before word i (i == n: at the end); a transpose at i swaps words i and i+1.
    """
    n, used, plan = len(doc_words), set(), []
    free = lambda i: not ({i - 1, i, i + 1} & used)  # noqa: E731
    while len(plan) < k:
        cands = {
            "replace": [i for i in range(n) if free(i)],
            "delete": [i for i in range(n) if free(i)] if n - sum(op == "delete" for op, _ in plan) > 1 else [],
            "insert": [i for i in range(n + 1) if free(i)],
            "transpose": [i for i in range(n - 1) if free(i) and free(i + 1)
                          and doc_words[i].casefold() != doc_words[i + 1].casefold()],  # fmt: skip
        }
        if not any(cands.values()):
            raise ValueError(f"{k} separated edits do not fit in {n} words; lower the edit rate")
        op = rng.choice(OPS)
        while not cands[op]:
            op = rng.choice(OPS)
        i = rng.choice(cands[op])
        used |= {i, i + 1} if op == "transpose" else {i}
        plan.append((op, i))
    return plan


def apply_edits(doc: Doc, plan: list[tuple[str, int]], new_word: Callable[[str | None], str]) -> Doc:
    """A copy of doc with the planned edits; new_word(old) draws a vocabulary word (differing from old)."""
    ops = {i: op for op, i in plan}
    out = Doc.__new__(Doc)
    out.prefix, out.words, out.glue = doc.prefix, [], []
    n, i = len(doc.words), 0
    while i <= n:
        op = ops.get(i)
        if op == "insert":
            out.words.append(new_word(None))
            out.glue.append(" ")
        if i == n:
            break
        w, g = doc.words[i], doc.glue[i]
        if op == "replace":
            out.words.append(new_word(w))
            out.glue.append(g)
        elif op == "delete":
            if i == n - 1 and out.glue:  # keep the text's ending on the previous word
                out.glue[-1] = g
        elif op == "transpose":
            out.words += [doc.words[i + 1], w]
            out.glue += [g, doc.glue[i + 1]]
            i += 1
        else:
            out.words.append(w)
            out.glue.append(g)
        i += 1
    if ops.get(n) == "insert" and len(out.words) > 1:  # appended word takes over the final punctuation
        out.glue[-2], out.glue[-1] = " ", out.glue[-2]
    return out


def add_noise(doc: Doc, rng: random.Random) -> None:
    """Formatting a human ignores: case changes, punctuation added/removed, odd whitespace, trailing space.

    Glue is only changed where it holds whitespace, so two words never merge and `words()` is unchanged.
    """
    n = len(doc.words)
    for _ in range(rng.randint(1, max(1, n // 10))):
        kind, i = rng.choice(("case", "punct_add", "punct_remove", "space")), rng.randrange(n)
        w, g = doc.words[i], doc.glue[i]
        if kind == "case":
            new = rng.choice((str.upper, str.lower, str.capitalize))(w)
            if new.casefold() == w.casefold():
                doc.words[i] = new
        elif i == n - 1:
            continue
        elif kind == "punct_add" and g.isspace():
            doc.glue[i] = rng.choice(",.!") + g
        elif kind == "punct_remove" and any(c.isspace() for c in g) and g.strip():
            doc.glue[i] = "".join(c for c in g if c not in ",.!?;:") or " "
        elif kind == "space" and " " in g:
            doc.glue[i] = g.replace(" ", rng.choice(("  ", "\n", "\t", " \n", "\n\n")), 1)
    if rng.random() < 0.5:
        doc.glue[-1] += rng.choice((" ", "  ", "\n", " \t"))


def near_copy(text: str, rate: float, writer: LocaleWriter, rng: random.Random) -> tuple[str, int]:
    """(perturbed text, number of word edits) for one edit rate."""
    doc = Doc(text)
    k = n_edits(rate, len(doc.words))

    def new_word(old: str | None) -> str:
        while True:
            w = writer.word(rng)
            if old is None or w.casefold() != old.casefold():
                return w

    out = apply_edits(doc, plan_edits(doc.words, k, rng), new_word)
    add_noise(out, rng)
    return out.text(), k


# ---------------------------------------------------------------------------------------------- the set


def generate(seed: int, n_bases: int = 300, rates: Sequence[float] = RATES, locales: Sequence[str] = LOCALES,
             ) -> list[dict[str, Any]]:  # fmt: skip
    """Bases, their near copies and as many hard negatives; clusters interleaved, each base before its copies.

    Cluster names are "<template>-NNNN" (distinct texts: "<template>-xNNNN"), template "lorem" or "support".
    """
    rng = random.Random(seed)
    writers = {loc: LocaleWriter(loc, rng.randrange(2**32)) for loc in locales}
    groups: list[list[dict[str, Any]]] = []
    for i in range(n_bases):
        w = writers[locales[i % len(locales)]]
        template = "support" if w.locale in SUPPORT and rng.random() < 0.5 else "lorem"
        if template == "support":
            base, negative = w.support_message(rng), w.support_message(rng)
        else:
            n = _base_length(rng)
            base, negative = w.paragraph(rng, n), w.paragraph(rng, n)
        cluster = f"{template}-{i:04d}"
        group = [_row(f"{cluster}-base", base, cluster, "base", None, 0, w.locale)]
        for r in rates:
            text, k = near_copy(base, r, w, rng)
            group.append(_row(f"{cluster}-r{r:g}", text, cluster, "near", r, k, w.locale))
        groups.append(group)
        groups.append([_row(f"{template}-x{i:04d}", negative, f"{template}-x{i:04d}", "distinct", None, 0, w.locale)])
    return _interleave(groups, rng)


def _row(rid: str, text: str, cluster: str, kind: str, rate: float | None, edits: int, locale: str) -> dict[str, Any]:
    return {"id": rid, "text": text, "cluster": cluster, "kind": kind, "edit_rate": rate, "edits": edits, "locale": locale}


def _interleave(groups: list[list[dict[str, Any]]], rng: random.Random) -> list[dict[str, Any]]:
    """Rows at shuffled positions; within a cluster the base takes its earliest position (keep-first keeps it)."""
    total = sum(len(g) for g in groups)
    slots = rng.sample(range(total), total)
    out: list[dict[str, Any] | None] = [None] * total
    at = 0
    for group in groups:
        mine = sorted(slots[at : at + len(group)])
        at += len(group)
        nears = group[1:]
        rng.shuffle(nears)
        for pos, row in zip(mine, [group[0]] + nears):
            out[pos] = row
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- the real-text set

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_LOCALE = "en_real"
REAL_SOURCES = ("truthfulqa", "mmlu", "hh")
REAL_MIN_WORDS, REAL_MAX_WORDS = 20, 150
REAL_DUP_JACCARD = 0.5  # bases and distinct texts keep every pairwise 3-shingle Jaccard below this
HH_PREFIX_WORDS = 3  # HH-RLHF hard negatives: transcripts whose first human turn starts with the same 3 words


@dataclass(frozen=True)
class RealText:
    """One candidate text: its source, its group (MMLU subject, TruthfulQA category, HH first words) and a key
    naming the record it came from (an HH pair's chosen and rejected transcripts share one key)."""

    source: str
    group: str
    key: str
    text: str


class VocabWriter:
    """Writer-like stand-in for `near_copy`: `.word(rng)` draws uniformly from a fixed vocabulary."""

    def __init__(self, vocab: Iterable[str], locale: str = REAL_LOCALE) -> None:
        self.locale = locale
        self.vocab = sorted(set(vocab))
        if not self.vocab:
            raise ValueError("empty vocabulary")

    def word(self, rng: random.Random) -> str:
        return rng.choice(self.vocab)


def _clean(text: str) -> str:
    """NFKC (so the words `near_copy` edits are the words the dedup sees) and single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _n_words(text: str) -> int:
    return len(words(normalise_text(text)))


def _sentence(s: str) -> str:
    s = s.strip()
    return s if s[-1:] in ".!?" else s + "."


def _truthfulqa(data_dir: Path) -> list[RealText]:
    """Question + best answer + the other correct answers, one paragraph per row; 20-150 words."""
    out = []
    with open(data_dir / "truthfulqa" / "TruthfulQA.csv", newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            best = r["Best Answer"].strip()
            others = [a.strip() for a in r["Correct Answers"].split(";") if a.strip() and a.strip() != best]
            text = _clean(" ".join([r["Question"].strip(), _sentence(best)] + [_sentence(a) for a in others]))
            if REAL_MIN_WORDS <= _n_words(text) <= REAL_MAX_WORDS:
                out.append(RealText("truthfulqa", r["Category"], f"truthfulqa:{i}", text))
    return out


def _mmlu(data_dir: Path) -> list[RealText]:
    """'Question: ... Options: A) ... B) ... C) ... D) ...' per test question; 20-150 words (not truncated)."""
    out = []
    for path in sorted((data_dir / "mmlu" / "test").glob("*_test.csv")):
        subject = path.name.removesuffix("_test.csv")
        with open(path, newline="", encoding="utf-8") as f:
            for i, r in enumerate(csv.reader(f)):
                if len(r) < 6:
                    continue
                q, opts = r[0], r[1:5]
                text = _clean(f"Question: {q} Options: " + " ".join(f"{l}) {o}" for l, o in zip("ABCD", opts)))
                if REAL_MIN_WORDS <= _n_words(text) <= REAL_MAX_WORDS:
                    out.append(RealText("mmlu", subject, f"mmlu:{subject}:{i}", text))
    return out


def _truncate_real(text: str) -> str:
    """The text up to its REAL_MAX_WORDS-th word (as the dedup counts them), ended with a full stop."""
    ws = list(_WORD.finditer(text))
    return text if len(ws) <= REAL_MAX_WORDS else text[: ws[REAL_MAX_WORDS - 1].end()] + "."


def _hh(data_dir: Path) -> tuple[list[RealText], list[RealText]]:
    """(chosen, rejected) transcripts of HH-RLHF harmless-base test, truncated to <= 150 words; >= 20 words."""
    chosen, rejected = [], []
    with gzip.open(data_dir / "hh-rlhf" / "harmless-base" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            pair = json.loads(line)
            for side, bucket in (("chosen", chosen), ("rejected", rejected)):
                text = _truncate_real(_clean(pair[side]))
                ws = words(normalise_text(text))
                if len(ws) >= REAL_MIN_WORDS:  # group: first words of the first human turn (after "Human:")
                    bucket.append(RealText("hh", " ".join(ws[1 : 1 + HH_PREFIX_WORDS]), f"hh:{i}", text))
    return chosen, rejected


@functools.lru_cache(maxsize=4)
def load_real(data_dir: Path) -> dict[str, tuple[RealText, ...]]:
    """Candidate texts by pool: "truthfulqa", "mmlu", "hh" (chosen transcripts: the bases) and
    "hh_rejected" (the negatives), plus the vocabulary of all of them under "vocab" (as a tuple of words)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"reference data not found at {data_dir}")
    chosen, rejected = _hh(data_dir)
    pools: dict[str, Any] = {"truthfulqa": tuple(_truthfulqa(data_dir)), "mmlu": tuple(_mmlu(data_dir)),
                             "hh": tuple(chosen), "hh_rejected": tuple(rejected)}  # fmt: skip
    vocab = {w for pool in pools.values() for t in pool for w in words(normalise_text(t.text))}
    pools["vocab"] = tuple(sorted(w for w in vocab if w.isalpha() and (len(w) > 1 or w in ("a", "i"))))
    return pools


class _ShingleIndex:
    """The texts chosen so far, for the 'no two are (near-)duplicates' check by exact 3-shingle Jaccard."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.postings: dict[tuple[str, ...], list[int]] = defaultdict(list)

    def max_jaccard(self, sh: set[tuple[str, ...]]) -> float:
        shared = Counter(j for s in sh for j in self.postings.get(s, ()))
        return max((n / (len(sh) + self.sizes[j] - n) for j, n in shared.items()), default=0.0)

    def add(self, sh: set[tuple[str, ...]]) -> None:
        for s in sh:
            self.postings[s].append(len(self.sizes))
        self.sizes.append(len(sh))


def generate_real(data_dir: Path = DEFAULT_DATA_DIR, seed: int = 0, n_bases: int = 300,
                  rates: Sequence[float] = RATES) -> list[dict[str, Any]]:  # fmt: skip
    """The held-out set: like `generate` (same rows and order rules), but from real English text.

    Bases (20-150 words, sources in turn, texts drawn with random.Random(seed)):
      - truthfulqa: question + best answer + the other correct answers as one paragraph;
      - mmlu: a test question and its four options, "Question: ... Options: A) ... B) ... C) ... D) ...";
      - hh: an HH-RLHF harmless-base `chosen` transcript, cut after its 150th word.
    Near copies: `near_copy` at each rate, inserted/replacement words drawn from the real texts' vocabulary.
    Distinct texts (hard negatives), one per base, same source and template: an MMLU question of the same
    subject; a TruthfulQA question of the same category; the `rejected` transcript of ANOTHER HH pair whose
    first human turn starts with the same 3 words (else of any other pair). Never the same record: an HH
    pair's chosen and rejected transcripts differ only in the last turn, so they are duplicates, not negatives
    (truncated to 150 words, often identical).
    No two texts among the bases and distinct texts have a 3-shingle Jaccard of 0.5 or more: a candidate that
    close to any text already chosen is skipped, since it would be a genuine (near-)duplicate, not a negative
    (MMLU and TruthfulQA hold some reworded repeats). This puts every negative below the default threshold (0.5,
    verified by exact Jaccard) by construction: at the defaults the set measures recall; precision only bites
    at lower thresholds (--sweep).

    Cluster names are "real-<source>-NNNN" (distinct texts: "real-<source>-xNNNN"); locale "en_real".
    """
    pools = load_real(Path(data_dir))
    rng = random.Random(seed)
    writer = VocabWriter(pools["vocab"])
    by_group: dict[str, dict[str, list[RealText]]] = {}
    for src, pool in (("truthfulqa", pools["truthfulqa"]), ("mmlu", pools["mmlu"]), ("hh", pools["hh_rejected"])):
        by_group[src] = defaultdict(list)
        for t in pool:
            by_group[src][t.group].append(t)
    order = {src: iter(rng.sample(pools[src], len(pools[src]))) for src in REAL_SOURCES}
    negatives_of = {"truthfulqa": "truthfulqa", "mmlu": "mmlu", "hh": "hh_rejected"}
    chosen = _ShingleIndex()
    used: set[str] = set()  # record keys already in the set (an HH key covers both transcripts of the pair)

    def ok(t: RealText, extra: set[tuple[str, ...]] | None = None) -> set[tuple[str, ...]] | None:
        """t's shingles if t may join the set (new record, not close to anything chosen or to `extra`)."""
        if t.key in used:
            return None
        sh = shingles(t.text, 3)
        if chosen.max_jaccard(sh) >= REAL_DUP_JACCARD or (extra is not None and jaccard(sh, extra) >= REAL_DUP_JACCARD):
            return None
        return sh

    def negative_for(base: RealText, base_sh: set[tuple[str, ...]]) -> tuple[RealText, set] | None:
        same = [t for t in by_group[base.source].get(base.group, ()) if t.key != base.key]
        for t in rng.sample(same, len(same)):
            if (sh := ok(t, base_sh)) is not None:
                return t, sh
        if base.source != "hh":
            return None  # MMLU / TruthfulQA: same subject or category, or no negative (and no base)
        pool = pools[negatives_of["hh"]]
        for _ in range(200):
            t = rng.choice(pool)
            if t.key != base.key and (sh := ok(t, base_sh)) is not None:
                return t, sh
        return None

    groups: list[list[dict[str, Any]]] = []
    for i in range(n_bases):
        src = REAL_SOURCES[i % len(REAL_SOURCES)]
        for base in order[src]:
            if (base_sh := ok(base)) is None or (neg := negative_for(base, base_sh)) is None:
                continue
            break
        else:
            raise ValueError(f"{src}: ran out of base texts after {i} bases; lower n_bases")
        negative, neg_sh = neg
        for t, sh in ((base, base_sh), (negative, neg_sh)):
            used.add(t.key)
            chosen.add(sh)
        cluster = f"real-{src}-{i:04d}"
        group = [_row(f"{cluster}-base", base.text, cluster, "base", None, 0, REAL_LOCALE)]
        for r in rates:
            text, k = near_copy(base.text, r, writer, rng)
            group.append(_row(f"{cluster}-r{r:g}", text, cluster, "near", r, k, REAL_LOCALE))
        groups.append(group)
        xc = f"real-{src}-x{i:04d}"
        groups.append([_row(xc, negative.text, xc, "distinct", None, 0, REAL_LOCALE)])
    return _interleave(groups, rng)


# ---------------------------------------------------------------------------------------------- scoring


def _rate_key(r: float) -> str:
    return f"{r:g}"


def _short(text: str, n: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 3] + "..."


def score(rows: list[dict[str, Any]], duplicate_of: list[int | None], max_examples: int = 5) -> dict[str, Any]:
    """Recall per edit rate (near rows flagged against their own cluster), pair precision and false merges."""
    if len(duplicate_of) != len(rows):
        raise ValueError(f"{len(duplicate_of)} verdicts for {len(rows)} rows")
    hits: dict[float, int] = defaultdict(int)
    near: dict[float, int] = defaultdict(int)
    flagged = correct = 0
    examples: list[dict[str, str]] = []
    for i, (row, j) in enumerate(zip(rows, duplicate_of)):
        if j is not None and not 0 <= j < i:
            raise ValueError(f"row {i}: duplicate_of must point at an earlier row, got {j}")
        same = j is not None and rows[j]["cluster"] == row["cluster"]
        if row["kind"] == "near":
            near[row["edit_rate"]] += 1
            hits[row["edit_rate"]] += same
        if j is None:
            continue
        flagged += 1
        correct += same
        if not same and len(examples) < max_examples:
            examples.append({"id": row["id"], "kept_id": rows[j]["id"], "text": _short(row["text"]),
                             "kept_text": _short(rows[j]["text"])})  # fmt: skip
    low = [r for r in near if r <= LOW_RATE + 1e-9]
    kinds = defaultdict(int)
    for row in rows:
        kinds[row["kind"]] += 1
    return {
        "recall": {_rate_key(r): round(hits[r] / near[r], 4) for r in sorted(near)},
        "recall_le_5pct": round(sum(hits[r] for r in low) / sum(near[r] for r in low), 4) if low else None,
        "precision": round(correct / flagged, 4) if flagged else 1.0,
        "false_merges": flagged - correct,
        "false_merge_examples": examples,
        "counts": {"rows": len(rows), **{k: kinds[k] for k in ("base", "near", "distinct")}, "flagged": flagged,
                   "near_per_rate": {_rate_key(r): near[r] for r in sorted(near)},
                   "distinct_flagged": sum(d is not None for row, d in zip(rows, duplicate_of) if row["kind"] == "distinct")},
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------- running the dedup


def run_near_dedup(rows: list[dict[str, Any]], overrides: dict[str, Any] | None = None) -> list[int | None]:
    """duplicate_of for each row from the data stage's NearDeduper; only the given config keys are set."""
    from tasks.data.config import NearDedupConfig
    from tasks.data.dedup import NearDeduper
    from tasks.data.ngrams import WordHasher

    near = NearDeduper(NearDedupConfig(**(overrides or {})), WordHasher())
    ids = [r["id"] for r in rows]
    verdicts = near.run(ids, [words(normalise_text(r["text"])) for r in rows])
    index = {rid: i for i, rid in enumerate(ids)}
    return [None if v is None else index[v[0]] for v in verdicts]


def sweep(rows: list[dict[str, Any]], grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run and score each config (dict of shingle_size / num_perm / threshold); one result row per config."""
    out = []
    for cfg in grid:
        t0 = time.perf_counter()
        res = score(rows, run_near_dedup(rows, cfg))
        out.append({**cfg, "recall": res["recall"], "recall_le_5pct": res["recall_le_5pct"],
                    "precision": res["precision"], "false_merges": res["false_merges"],
                    "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------- exact Jaccard


def shingles(text: str, k: int) -> set[tuple[str, ...]]:
    """Word k-gram set of the normalised text (a text shorter than k is one shingle), as the dedup sees it."""
    ws = words(normalise_text(text))
    return {tuple(ws)} if len(ws) < k else {tuple(ws[i : i + k]) for i in range(len(ws) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _stats(values: list[float]) -> dict[str, float]:
    import numpy as np

    v = np.asarray(values, dtype=float)
    q = np.percentile(v, [0, 5, 50, 95, 100]) if len(v) else [math.nan] * 5
    return {"n": len(v), **{name: round(float(x), 3) for name, x in zip(("min", "p5", "median", "p95", "max"), q)}}


def jaccard_distributions(rows: list[dict[str, Any]], sizes: Sequence[int] = SWEEP_SHINGLES) -> dict[int, dict[str, Any]]:
    """Per shingle size: exact Jaccard of each near copy to its base (per edit rate), and of each distinct
    text to its most similar other row of the same locale (the hard negatives' worst case)."""
    base_of = {r["cluster"]: r for r in rows if r["kind"] == "base"}
    by_locale: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_locale[r["locale"]].append(i)
    out: dict[int, dict[str, Any]] = {}
    for k in sizes:
        sets = [shingles(r["text"], k) for r in rows]
        index = {r["id"]: i for i, r in enumerate(rows)}
        pos: dict[float, list[float]] = defaultdict(list)
        neg: list[float] = []
        for i, r in enumerate(rows):
            if r["kind"] == "near":
                pos[r["edit_rate"]].append(jaccard(sets[i], sets[index[base_of[r["cluster"]]["id"]]]))
            elif r["kind"] == "distinct":
                neg.append(max((jaccard(sets[i], sets[j]) for j in by_locale[r["locale"]] if j != i), default=0.0))
        out[k] = {**{f"near@{_rate_key(r)}": _stats(pos[r]) for r in sorted(pos)}, "distinct(max)": _stats(neg)}
    return out


# ---------------------------------------------------------------------------------------------- CLI


def _format_distributions(dist: dict[int, dict[str, Any]]) -> str:
    lines = ["exact Jaccard of word k-shingles: near = copy vs its base; distinct(max) = max over other rows of the locale",
             f"{'k':>2}  {'set':<14}{'n':>5}{'min':>7}{'p5':>7}{'median':>8}{'p95':>7}{'max':>7}"]  # fmt: skip
    for k, sets in dist.items():
        for name, s in sets.items():
            lines.append(f"{k:>2}  {name:<14}{s['n']:>5}{s['min']:>7.3f}{s['p5']:>7.3f}{s['median']:>8.3f}"
                         f"{s['p95']:>7.3f}{s['max']:>7.3f}")  # fmt: skip
    return "\n".join(lines)


def _format_result(res: dict[str, Any], cfg: dict[str, Any]) -> str:
    c = res["counts"]
    lines = [f"config: {cfg}",
             f"rows {c['rows']} (base {c['base']}, near {c['near']}, distinct {c['distinct']}), flagged {c['flagged']}",
             f"{'edit rate':>9}  {'near':>5}  {'recall':>6}"]  # fmt: skip
    lines += [f"{r:>9}  {c['near_per_rate'][r]:>5}  {v:>6.3f}" for r, v in res["recall"].items()]
    lines.append(f"recall (edit rate <= 5%): {res['recall_le_5pct']:.3f}   pair precision: {res['precision']:.3f}   "
                 f"false merges: {res['false_merges']} (distinct texts flagged: {c['distinct_flagged']})")  # fmt: skip
    for ex in res["false_merge_examples"]:
        lines.append(f"  false merge {ex['id']} -> {ex['kept_id']}\n    {ex['text']!r}\n    {ex['kept_text']!r}")
    return "\n".join(lines)


def _format_sweep(results: list[dict[str, Any]]) -> str:
    rates = list(results[0]["recall"]) if results else []
    head = f"{'k':>2} {'thr':>4} {'perm':>4} " + "".join(f"{'R@' + r:>8}" for r in rates)
    lines = [head + f"{'R<=5%':>8}{'prec':>8}{'FM':>6}{'sec':>6}"]
    ranked = sorted(results, key=lambda x: (-(x["recall_le_5pct"] or 0.0), -x["precision"]))
    for x in ranked:
        lines.append(f"{x['shingle_size']:>2} {x['threshold']:>4.1f} {x['num_perm']:>4} "
                     + "".join(f"{x['recall'][r]:>8.3f}" for r in rates)
                     + f"{x['recall_le_5pct']:>8.3f}{x['precision']:>8.3f}{x['false_merges']:>6}{x['seconds']:>6.1f}")  # fmt: skip
    return "\n".join(lines)


def plot_recall(res: dict[str, Any], path: str, label: str) -> None:
    """PNG of recall against edit rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [float(r) * 100 for r in res["recall"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, list(res["recall"].values()), marker="o", label=label)
    ax.set(xlabel="word edit rate (%)", ylabel="recall", ylim=(0, 1.02), title="near-dedup recall vs edit rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-bases", type=int, default=300)
    parser.add_argument("--shingle-size", type=int)
    parser.add_argument("--num-perm", type=int)
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--plot", help="write a PNG of recall against edit rate here")
    parser.add_argument("--sweep", action="store_true", help="exact-Jaccard distributions + shingle_size x threshold grid")
    parser.add_argument("--real", action="store_true", help="the held-out set from real English text (generate_real)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared reference data (with --real)")
    args = parser.parse_args(argv)
    from tasks.data.config import NearDedupConfig

    overrides = {k: v for k, v in (("shingle_size", args.shingle_size), ("num_perm", args.num_perm),
                                   ("threshold", args.threshold)) if v is not None}  # fmt: skip
    cfg = NearDedupConfig(**overrides)
    effective = {"shingle_size": cfg.shingle_size, "num_perm": cfg.num_perm, "threshold": cfg.threshold}
    rows = generate_real(args.data_dir, args.seed, args.n_bases) if args.real else generate(args.seed, args.n_bases)
    if args.sweep:
        print(_format_distributions(jaccard_distributions(rows)))
        grid = [{"shingle_size": k, "num_perm": cfg.num_perm, "threshold": t}
                for k in SWEEP_SHINGLES for t in SWEEP_THRESHOLDS]  # fmt: skip
        print()
        print(_format_sweep(sweep(rows, grid)))
        return
    res = score(rows, run_near_dedup(rows, overrides))
    print(_format_result(res, effective))
    if args.plot:
        plot_recall(res, args.plot, ", ".join(f"{k}={v}" for k, v in effective.items()))
    print(json.dumps({"config": effective, "set": "real" if args.real else "faker", "seed": args.seed, **res}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
