"""Exact and near-duplicate removal; the first row (input order) of each duplicate group is kept."""
import bisect
import hashlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from datasketch import MinHash, MinHashLSH

from tasks.data.config import NearDedupConfig
from tasks.data.ngrams import WordHasher, concat_flat, shingle_hashes, subset_flat

_ESTIMATE_PERMS = 64  # sketch values kept per row for the estimate
_SLACK = 0.25  # exact-check pairs whose sketch agreement is >= threshold - this (~4 sigma at 64 values)
_CHUNK = 1024  # shingles per signature block: CHUNK * num_perm * 4 bytes (512 KB) stays in L2; 32k was 2.3x slower
_P = np.uint64(1099511628211)


def exact_key(canonical_text: str) -> str:
    """Digest of a row's canonical (NFKC, casefolded, whitespace-collapsed) text."""
    return hashlib.blake2b(canonical_text.encode("utf-8"), digest_size=16).hexdigest()


class ExactDeduper:
    """Remembers every key seen; `first_of` returns the id of the earlier copy, or None."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def first_of(self, rid: str, key: str) -> str | None:
        """`key` is `exact_key` of the row's canonical text."""
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = rid
        return first


def fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finaliser, the pre-mix of datasketch's "affine32" MinHash scheme."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


class SortedRuns:
    """A growing multiset of (uint32 key, owner) pairs, queried a batch at a time, held in numpy.

    A dict per LSH band costs ~100 bytes per entry (3 GB for 1M rows x 32 bands); here each pair is
    one uint64, key in the high half and owner in the low, kept in sorted runs. Runs of similar size
    are merged as they come (as in an LSM tree; numpy's stable sort merges two sorted runs in linear
    time), so a query touches O(log n) runs with two `searchsorted` each.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def add(self, keys: np.ndarray, owners: np.ndarray) -> None:
        if not len(keys):
            return
        self._runs.append(np.sort(_pack(keys, owners)))
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newer, older = self._runs.pop(), self._runs.pop()
            self._runs.append(np.sort(np.concatenate([older, newer]), kind="stable"))

    def query(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `keys`, owner) for every stored pair whose key equals a queried key."""
        order = np.argsort(keys, kind="stable")  # sorted needles: searchsorted walks each run once
        needles = keys[order].astype(np.uint64) << np.uint64(32)
        pos, own = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
        for run in self._runs:
            lo = np.searchsorted(run, needles, "left")
            hit = np.flatnonzero((run[np.minimum(lo, len(run) - 1)] >> np.uint64(32)) == (needles >> np.uint64(32)))
            hi = np.searchsorted(run, needles[hit] | np.uint64(0xFFFFFFFF), "right")
            p, o = _expand(order[hit], lo[hit], hi - lo[hit])
            pos.append(p)
            own.append((run[o] & np.uint64(0xFFFFFFFF)).astype(np.int64))
        return np.concatenate(pos), np.concatenate(own)


def _pack(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    return (high.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)


def _expand(q: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [starts, starts + counts): (q repeated per element, every index of every range)."""
    total = int(counts.sum())
    if not total:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(q, counts), np.repeat(starts, counts) + offsets


class Sketches(NamedTuple):
    """A batch's per-row near-dedup features: the MinHash signature's band keys and the part of it kept for the
    estimate, sorted shingle sets and 32-bit word sequences (the last two as flat (values, n + 1 offsets) pairs)."""

    est: np.ndarray  # (n, 64) uint16, see NearDeduper._sketch
    keys: np.ndarray  # (n, bands) uint32
    sets: tuple[np.ndarray, np.ndarray]
    words: tuple[np.ndarray, np.ndarray]

    def subset(self, keep: np.ndarray) -> "Sketches":
        """The rows where `keep` (bool, one per row) is set, in order."""
        return Sketches(self.est[keep], self.keys[keep], subset_flat(self.sets, keep), subset_flat(self.words, keep))

    @staticmethod
    def concat(parts: list["Sketches"]) -> "Sketches":
        """The rows of `parts` one after another (partitions of one batch back into the batch)."""
        return Sketches(np.concatenate([p.est for p in parts]), np.concatenate([p.keys for p in parts]),
                        concat_flat([p.sets for p in parts]), concat_flat([p.words for p in parts]))  # fmt: skip


class NearDeduper:
    """MinHash LSH over word shingles, candidates verified by the exact Jaccard of their shingle sets.

    Rows arrive in batches (`run` may be called many times; state carries over), so a million-row
    file streams through with only sketches and shingle sets held: ~1 KB a row, never the row.
    - Sketches are exactly datasketch's `MinHash(num_perm, scheme="affine32")` (same permutations,
      same finaliser; a test checks equality), computed for a whole batch in one numpy pass.
    - The band/row split is datasketch's optimum for `threshold` with false negatives weighted 9:1
      over false positives: a false candidate only costs one exact check, a missed one is a kept
      duplicate. Bands live in `SortedRuns`, not in datasketch's dict index (~65 us a row here).
    - A candidate is a duplicate only if the exact Jaccard of the two shingle sets reaches the
      threshold; the sketch's estimate is reported beside it.
    """

    def __init__(self, cfg: NearDedupConfig, hasher: WordHasher) -> None:
        self.cfg, self.hasher = cfg, hasher
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, weights=(0.1, 0.9))
        self.bands, self.rows_per_band = lsh.b, lsh.r
        a, b = MinHash(num_perm=cfg.num_perm, seed=1).permutations
        self._a, self._b = a.astype(np.uint32), b.astype(np.uint32)
        self._salt = (np.arange(self.bands, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        self._index = SortedRuns()
        self._ids: list[str] = []  # kept rows, in order: the owners in the index
        self._sigs: list[np.ndarray] = []  # per batch: (kept rows, 64) uint16, see _sketch
        self._shingles: list[tuple[np.ndarray, np.ndarray]] = []  # per batch: (flat sorted uint32 sets, offsets)
        self._words: list[tuple[np.ndarray, np.ndarray]] = []  # per batch: (flat uint32 word hashes, offsets)
        self._batch_start: list[int] = []  # first owner number of each batch
        self.clusters: dict[str, list[dict[str, Any]]] = {}

    def _shingle_values(self, docs: list[list[str]], flat: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """(32-bit shingle hash of every shingle, doc index), doc-major: the values sketched and compared."""
        h, starts = flat if flat is not None else self.hasher.flat(docs)
        hs, doc = shingle_hashes(h, starts, self.cfg.shingle_size)
        return (hs >> np.uint64(32)).astype(np.uint32), doc

    def signatures(self, docs: list[list[str]], flat: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(n_docs, num_perm) uint32 MinHash values of each doc's word shingles."""
        return self._signatures(*self._shingle_values(docs, flat), len(docs))

    def _signatures(self, values: np.ndarray, doc: np.ndarray, n: int) -> np.ndarray:
        hv = fmix32(values)
        sig = np.empty((n, self.cfg.num_perm), dtype=np.uint32)
        first = np.searchsorted(doc, np.arange(n + 1))  # every doc has >= 1 shingle
        step = max(1, _CHUNK * n // max(1, len(hv)))  # docs per block
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            block = hv[first[lo] : first[hi], None] * self._a[None, :] + self._b[None, :]
            sig[lo:hi] = np.minimum.reduceat(block, first[lo:hi] - first[lo], axis=0)
        return sig

    def _band_keys(self, sig: np.ndarray) -> np.ndarray:
        """(n, bands) uint32: each band's rows hashed together, salted by band so one index holds all bands.

        32 bits are enough: a chance collision only adds a candidate, which the sketch check drops.
        """
        keys = np.zeros((len(sig), self.bands), dtype=np.uint64)
        for j in range(self.bands):
            for c in range(j * self.rows_per_band, (j + 1) * self.rows_per_band):
                keys[:, j] = keys[:, j] * _P + sig[:, c]
        keys ^= self._salt
        return (keys ^ (keys >> np.uint64(32))).astype(np.uint32)

    def sketch(self, docs: list[list[str]], flat: tuple[np.ndarray, np.ndarray] | None = None) -> Sketches:
        """Everything `run` needs of each row that depends on that row alone (no index state), so it can be
        computed anywhere, a Dask worker included, and decided on in order later."""
        flat = flat if flat is not None else self.hasher.flat(docs)
        words = ((flat[0] >> np.uint64(32)).astype(np.uint32), flat[1])  # each doc's word sequence, 32-bit hashes
        values, doc = self._shingle_values(docs, flat)
        sig = self._signatures(values, doc, len(docs))
        return Sketches(self._sketch(sig), self._band_keys(sig), _sorted_sets(values, doc, len(docs)), words)

    def run(self, ids: list[str], docs: list[list[str]], flat: tuple[np.ndarray, np.ndarray] | None = None,
            sketches: Sketches | None = None) -> list[tuple[str, float] | None]:  # fmt: skip
        """For each row of this batch, in order: (kept id, exact Jaccard) of its earlier near-duplicate, else None.

        Earlier means any kept row of an earlier batch or an earlier kept row of this one: the same
        answer as inserting rows one by one into an LSH index and querying each first. Candidate pairs
        are found and pre-screened by sketch agreement in numpy (chance band collisions grow with the
        number of rows held); only pairs whose estimate is within `_SLACK` of the threshold get an
        exact check, so the Python loop sees the few real candidates. `sketches` (from `sketch`, made
        elsewhere) replaces the sketching of `docs`.
        """
        est16, keys, sets, words = sketches if sketches is not None else self.sketch(docs, flat)
        n, base = len(est16), len(self._ids)
        # candidate pairs (row of this batch, other) with other = owner number, or base + index in this batch
        pos, owners = self._index.query(keys.ravel())
        rows, others = pos // self.bands, owners
        inner_rows, inner_others = _pairs_within(keys)
        rows, others = np.concatenate([rows, inner_rows]), np.concatenate([others, base + inner_others])
        packed = np.unique(_pack(rows, others))  # sorted by row, then other: input order
        pairs = np.stack([(packed >> np.uint64(32)).astype(np.int64), (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)], axis=1)
        estimate = self._agreement(est16, pairs, base)
        keep_pair = estimate >= self.cfg.threshold - _SLACK
        pairs, estimate = pairs[keep_pair], estimate[keep_pair]

        out: list[tuple[str, float] | None] = [None] * n
        kept = np.ones(n, dtype=bool)
        for i, group in _groups(pairs[:, 0]):  # rows in order; each group's others in input order
            best = None
            for k in group:
                c = int(pairs[k, 1])
                if c >= base and not kept[c - base]:
                    continue
                other, other_words = (_set(sets, c - base), _set(words, c - base)) if c >= base else self._kept_row(c)
                exact = _jaccard(_set(sets, i), other)
                if exact < self.cfg.threshold or (best is not None and exact <= best[1]):
                    continue
                edits = _edit_fraction(_set(words, i), other_words)
                if edits <= self.cfg.max_edit_fraction:
                    best = (c, exact, float(estimate[k]), edits)
            if best is not None:
                kept[i] = False
                c, exact, est, edits = best
                kept_id = ids[c - base] if c >= base else self._ids[c]
                out[i] = (kept_id, exact)
                self.clusters.setdefault(kept_id, []).append({"id": ids[i], "jaccard": round(exact, 3), "estimated": round(est, 3),
                                                              "edit_fraction": round(edits, 3)})  # fmt: skip
        self._remember([ids[i] for i in np.flatnonzero(kept)], kept, est16, keys, sets, words)
        return out

    def _sketch(self, sig: np.ndarray) -> np.ndarray:
        """What is kept of a signature for the estimate: its first 64 values, low 16 bits (64 bytes a row;
        equal values stay equal, unequal ones collide 1 in 65,536)."""
        return sig[:, :_ESTIMATE_PERMS].astype(np.uint16)

    def _agreement(self, sig: np.ndarray, pairs: np.ndarray, base: int) -> np.ndarray:
        """Share of equal sketch values for each (row, other) pair: the estimated Jaccard (`sig`: `_sketch`es)."""
        other_sig = np.empty((len(pairs), sig.shape[1]), dtype=np.uint16)
        inner = pairs[:, 1] >= base
        other_sig[inner] = sig[pairs[inner, 1] - base]
        old = np.flatnonzero(~inner)
        block = np.searchsorted(self._batch_start, pairs[old, 1], side="right") - 1
        for b in np.unique(block).tolist():
            at = old[block == b]
            other_sig[at] = self._sigs[b][pairs[at, 1] - self._batch_start[b]]
        return (sig[pairs[:, 0]] == other_sig).mean(axis=1) if len(pairs) else np.empty(0)

    def _remember(self, kept_ids: list[str], kept: np.ndarray, est: np.ndarray, keys: np.ndarray,
                  sets: tuple[np.ndarray, np.ndarray], words: tuple[np.ndarray, np.ndarray]) -> None:  # fmt: skip
        """Add this batch's kept rows to the index, with their sketches, shingle sets and word sequences."""
        start = len(self._ids)
        self._ids += kept_ids
        owners = np.repeat(np.arange(start, start + len(kept_ids), dtype=np.int32), self.bands)
        self._index.add(keys[kept].ravel(), owners)
        self._shingles.append(subset_flat(sets, kept))
        self._words.append(subset_flat(words, kept))
        self._sigs.append(est[kept])
        self._batch_start.append(start)

    def _kept_row(self, owner: int) -> tuple[np.ndarray, np.ndarray]:
        """(shingle set, word sequence) of a kept row of an earlier batch."""
        b = bisect.bisect_right(self._batch_start, owner) - 1
        local = owner - self._batch_start[b]
        return _set(self._shingles[b], local), _set(self._words[b], local)

    def report(self) -> list[dict[str, Any]]:
        """Clusters, largest first: the kept row and the rows removed as its near-duplicates."""
        items = sorted(self.clusters.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [{"kept": k, "removed": v} for k, v in items[: self.cfg.max_clusters_in_report]]


def _pairs_within(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, earlier row) of this batch sharing a band key, found by sorting each band, not by scanning."""
    rows, others = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for j in range(keys.shape[1]):
        order = np.argsort(keys[:, j], kind="stable")  # equal keys stay in row order
        ks = keys[order, j]
        d = 1
        while d < len(ks):
            same = np.flatnonzero(ks[d:] == ks[:-d])
            if not len(same):
                break
            rows.append(order[same + d])
            others.append(order[same])
            d += 1
    return np.concatenate(rows), np.concatenate(others)


def _groups(first: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(value, indices) for each run of equal values in a sorted array."""
    if not len(first):
        return
    cuts = np.flatnonzero(np.diff(first)) + 1
    for idx in np.split(np.arange(len(first)), cuts):
        yield int(first[idx[0]]), idx


def _sorted_sets(values: np.ndarray, doc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each doc's distinct shingle values, sorted, as (flat values, n + 1 offsets).

    One sort of (doc << 32 | value) packed in uint64: ~12x faster than a lexsort of the two columns.
    """
    packed = np.sort((doc.astype(np.uint64) << np.uint64(32)) | values.astype(np.uint64))
    keep = np.ones(len(packed), dtype=bool)
    keep[1:] = packed[1:] != packed[:-1]
    packed = packed[keep]
    return packed.astype(np.uint32), np.searchsorted((packed >> np.uint64(32)).astype(np.int64), np.arange(n + 1))


def _edit_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Word-level Levenshtein distance over the longer length (rapidfuzz, C++): scattered edits stay small,
    a replaced block (another question under one shared passage) does not, whatever the Jaccard."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(a.tolist(), b.tolist()) / max(len(a), len(b), 1)


def _set(sets: tuple[np.ndarray, np.ndarray], i: int) -> np.ndarray:
    values, offsets = sets
    return values[offsets[i] : offsets[i + 1]]


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
