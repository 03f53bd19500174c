"""Exact and near-duplicate removal; the first row (input order) of each duplicate group is kept."""
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

    def first_of(self, rid: str, canonical_text: str) -> str | None:
        key = exact_key(canonical_text)
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


class NearDeduper:
    """MinHash LSH over word shingles, batched.

    The sketches are exactly datasketch's `MinHash(num_perm, scheme="affine32")` (same permutations,
    same finaliser; a test checks equality) computed for all rows in one numpy pass, and the LSH
    band/row split is datasketch's optimum for the threshold. Banding itself is a dict per band:
    datasketch's `MinHashLSH.insert/query` cost ~65 us a row here, this ~5 us. A candidate is a
    duplicate only if its estimated Jaccard (share of equal sketch values) reaches the threshold.
    """

    def __init__(self, cfg: NearDedupConfig, hasher: WordHasher) -> None:
        self.cfg, self.hasher = cfg, hasher
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        self.bands, self.rows_per_band = lsh.b, lsh.r
        a, b = MinHash(num_perm=cfg.num_perm, seed=1).permutations
        self._a, self._b = a.astype(np.uint32), b.astype(np.uint32)
        self.clusters: dict[str, list[dict[str, Any]]] = {}

    def signatures(self, docs: list[list[str]], flat: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(n_docs, num_perm) uint32 MinHash values of each doc's word shingles."""
        h, starts = flat if flat is not None else self.hasher.flat(docs)
        hs, doc = shingle_hashes(h, starts, self.cfg.shingle_size)
        hv = fmix32((hs >> np.uint64(32)).astype(np.uint32))
        sig = np.empty((len(docs), self.cfg.num_perm), dtype=np.uint32)
        first = np.searchsorted(doc, np.arange(len(docs) + 1))  # every doc has >= 1 shingle
        step = max(1, _CHUNK * len(docs) // max(1, len(hs)))  # docs per block
        for lo in range(0, len(docs), step):
            hi = min(len(docs), lo + step)
            block = hv[first[lo] : first[hi], None] * self._a[None, :] + self._b[None, :]
            sig[lo:hi] = np.minimum.reduceat(block, first[lo:hi] - first[lo], axis=0)
        return sig

    def run(self, ids: list[str], docs: list[list[str]], flat: tuple[np.ndarray, np.ndarray] | None = None,
            ) -> list[tuple[str, float] | None]:  # fmt: skip
        """For each row in order: (kept id, estimated Jaccard) of its earlier near-duplicate, else None.

        Same result as inserting rows one by one into an LSH index and querying each first: only rows
        that share a band with an earlier row (found with one `np.unique` per band) are looked at in Python.
        """
        sig = self.signatures(docs, flat)
        n, r = len(docs), self.rows_per_band
        order = np.arange(n)
        keys, tables = [], []
        flagged = np.zeros(n, dtype=bool)
        for j in range(self.bands):
            key = np.zeros(n, dtype=np.uint64)
            for c in range(j * r, (j + 1) * r):
                key = key * _P + sig[:, c]
            _, first, inv, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
            flagged |= first[inv] < order
            table: dict[int, list[int]] = {}
            shared = np.flatnonzero(counts[inv] > 1)
            for i, k in zip(shared.tolist(), key[shared].tolist()):
                table.setdefault(k, []).append(i)
            keys.append(key)
            tables.append(table)
        out: list[tuple[str, float] | None] = [None] * n
        kept = np.ones(n, dtype=bool)
        for i in np.flatnonzero(flagged).tolist():
            cands = {c for key, table in zip(keys, tables) for c in table.get(int(key[i]), ()) if c < i and kept[c]}
            best = None
            for c in sorted(cands):
                sim = float(np.count_nonzero(sig[i] == sig[c])) / self.cfg.num_perm
                if sim >= self.cfg.threshold and (best is None or sim > best[1]):
                    best = (ids[c], sim)
            if best is not None:
                kept[i] = False
                out[i] = best
                self.clusters.setdefault(best[0], []).append({"id": ids[i], "jaccard": round(best[1], 3)})
        return out

    def report(self) -> list[dict[str, Any]]:
        """Clusters, largest first: the kept row and the rows removed as its near-duplicates."""
        items = sorted(self.clusters.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [{"kept": k, "removed": v} for k, v in items[: self.cfg.max_clusters_in_report]]
