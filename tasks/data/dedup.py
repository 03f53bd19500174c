"""Exact and near-duplicate removal; the first row (input order) of each duplicate group is kept."""
import bisect
import hashlib
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from tasks.data.config import NearDedupConfig
from tasks.data.ngrams import WordHasher, shingle_hashes

_CHUNK = 32_768  # shingles per signature block (CHUNK * num_perm * 4 bytes: stays in cache)
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
    """A growing multiset of (uint64 key, owner) pairs, queried a batch at a time, held in numpy.

    A dict per LSH band costs ~100 bytes per entry (2 GB for 1M rows x 20 bands); sorted numpy runs
    cost 12. Runs of similar size are merged as they come (as in an LSM tree), so a query touches
    O(log n) runs with one `searchsorted` each.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, keys: np.ndarray, owners: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], owners[order]))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            (k2, o2), (k1, o1) = self._runs.pop(), self._runs.pop()
            keys, owners = np.concatenate([k1, k2]), np.concatenate([o1, o2])
            order = np.argsort(keys, kind="stable")
            self._runs.append((keys[order], owners[order]))

    def query(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `keys`, owner) for every stored pair whose key equals a queried key."""
        pos, own = [], []
        for run_keys, run_owners in self._runs:
            lo, hi = np.searchsorted(run_keys, keys, "left"), np.searchsorted(run_keys, keys, "right")
            for q in np.flatnonzero(hi > lo).tolist():
                pos += [q] * int(hi[q] - lo[q])
                own += run_owners[lo[q] : hi[q]].tolist()
        return np.asarray(pos, dtype=np.int64), np.asarray(own, dtype=np.int64)


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
        self._sigs: list[np.ndarray] = []  # per batch: (kept rows, num_perm) uint32
        self._shingles: list[tuple[np.ndarray, np.ndarray]] = []  # per batch: (flat sorted uint32 sets, offsets)
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
        """(n, bands) uint64: each band's rows hashed together, salted by band so one index holds all bands."""
        keys = np.zeros((len(sig), self.bands), dtype=np.uint64)
        for j in range(self.bands):
            for c in range(j * self.rows_per_band, (j + 1) * self.rows_per_band):
                keys[:, j] = keys[:, j] * _P + sig[:, c]
        return keys ^ self._salt

    def run(self, ids: list[str], docs: list[list[str]], flat: tuple[np.ndarray, np.ndarray] | None = None,
            ) -> list[tuple[str, float] | None]:  # fmt: skip
        """For each row of this batch, in order: (kept id, exact Jaccard) of its earlier near-duplicate, else None.

        Earlier means any kept row of an earlier batch or an earlier kept row of this one: the same
        answer as inserting rows one by one into an LSH index and querying each first.
        """
        n = len(docs)
        values, doc = self._shingle_values(docs, flat)
        sig = self._signatures(values, doc, n)
        sets = _sorted_sets(values, doc, n)
        keys = self._band_keys(sig)
        cands: list[set[int]] = [set() for _ in range(n)]  # owners (earlier batches) are >= 0, this batch's rows -1 - i
        pos, owners = self._index.query(keys.ravel())
        for q, o in zip((pos // self.bands).tolist(), owners.tolist()):
            cands[q].add(o)
        for j in range(self.bands):  # earlier rows of this batch sharing band j
            _, first, inv, counts = np.unique(keys[:, j], return_index=True, return_inverse=True, return_counts=True)
            for i in np.flatnonzero((counts[inv] > 1) & (first[inv] < np.arange(n))).tolist():
                cands[i].update(-1 - c for c in np.flatnonzero(keys[:, j] == keys[i, j]).tolist() if c < i)
        out: list[tuple[str, float] | None] = [None] * n
        kept = np.ones(n, dtype=bool)
        for i in [i for i in range(n) if cands[i]]:
            best = None
            for c in sorted(cands[i], key=lambda c: c if c >= 0 else len(self._ids) - 1 - c):  # input order: ties go to the first
                if c < 0 and not kept[-1 - c]:
                    continue
                other, other_sig = (_set(sets, -1 - c), sig[-1 - c]) if c < 0 else self._kept_row(c)
                exact = _jaccard(_set(sets, i), other)
                if exact >= self.cfg.threshold and (best is None or exact > best[1]):
                    best = (c, exact, float(np.count_nonzero(sig[i] == other_sig)) / self.cfg.num_perm)
            if best is not None:
                kept[i] = False
                c, exact, estimate = best
                kept_id = ids[-1 - c] if c < 0 else self._ids[c]
                out[i] = (kept_id, exact)
                self.clusters.setdefault(kept_id, []).append({"id": ids[i], "jaccard": round(exact, 3), "estimated": round(estimate, 3)})
        self._remember([ids[i] for i in np.flatnonzero(kept)], kept, sig, keys, sets)
        return out

    def _remember(self, kept_ids: list[str], kept: np.ndarray, sig: np.ndarray, keys: np.ndarray,
                  sets: tuple[np.ndarray, np.ndarray]) -> None:  # fmt: skip
        """Add this batch's kept rows to the index, with their sketches and shingle sets."""
        start = len(self._ids)
        self._ids += kept_ids
        owners = np.repeat(np.arange(start, start + len(kept_ids), dtype=np.int64), self.bands)
        self._index.add(keys[kept].ravel(), owners)
        values, offsets = sets
        lengths = np.diff(offsets)[kept]
        new_offsets = np.zeros(len(kept_ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        self._shingles.append((values[np.repeat(kept, np.diff(offsets))], new_offsets))
        self._sigs.append(sig[kept])
        self._batch_start.append(start)

    def _kept_row(self, owner: int) -> tuple[np.ndarray, np.ndarray]:
        """(shingle set, sketch) of a kept row of an earlier batch."""
        b = bisect.bisect_right(self._batch_start, owner) - 1
        local = owner - self._batch_start[b]
        return _set(self._shingles[b], local), self._sigs[b][local]

    def report(self) -> list[dict[str, Any]]:
        """Clusters, largest first: the kept row and the rows removed as its near-duplicates."""
        items = sorted(self.clusters.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [{"kept": k, "removed": v} for k, v in items[: self.cfg.max_clusters_in_report]]


def _sorted_sets(values: np.ndarray, doc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each doc's distinct shingle values, sorted, as (flat values, n + 1 offsets)."""
    order = np.lexsort((values, doc))
    v, d = values[order], doc[order]
    keep = np.ones(len(v), dtype=bool)
    keep[1:] = (v[1:] != v[:-1]) | (d[1:] != d[:-1])
    v, d = v[keep], d[keep]
    return v, np.searchsorted(d, np.arange(n + 1))


def _set(sets: tuple[np.ndarray, np.ndarray], i: int) -> np.ndarray:
    values, offsets = sets
    return values[offsets[i] : offsets[i + 1]]


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
