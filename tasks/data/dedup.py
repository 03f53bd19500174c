"""Exact and near-duplicate removal; the first row (input order) of each duplicate group is kept."""
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from tasks.data.config import NearDedupConfig
from tasks.data.text import canonical, words


def exact_key(row: dict[str, Any]) -> str:
    """Digest of the row's normalised text (NFKC, casefold, collapsed whitespace)."""
    return hashlib.blake2b(canonical(row).encode("utf-8"), digest_size=16).hexdigest()


class ExactDeduper:
    """Remembers every key seen; `first_of` returns the id of the earlier copy, or None."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def first_of(self, row: dict[str, Any]) -> str | None:
        key = exact_key(row)
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = row["id"]
        return first


@dataclass
class NearDeduper:
    """MinHash LSH over word shingles; a candidate counts only if its estimated Jaccard passes the threshold.

    Permutations are generated once and shared, and shingles are hashed with xxh32, which makes
    a sketch cost tens of microseconds instead of the default SHA-1 + per-object RNG setup.
    """

    cfg: NearDedupConfig
    clusters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kept id -> duplicates

    def __post_init__(self) -> None:
        self._lsh = MinHashLSH(threshold=self.cfg.threshold, num_perm=self.cfg.num_perm)
        self._perm = MinHash(num_perm=self.cfg.num_perm, seed=1).permutations
        self._sketches: dict[str, MinHash] = {}

    def sketch(self, row: dict[str, Any]) -> MinHash:
        toks = words(canonical(row))
        n = self.cfg.shingle_size
        shingles = [" ".join(toks[i : i + n]).encode() for i in range(max(1, len(toks) - n + 1))]
        m = MinHash(num_perm=self.cfg.num_perm, permutations=self._perm, scheme="affine32", hashfunc=xxhash.xxh32_intdigest)
        m.update_batch(shingles)
        return m

    def duplicate_of(self, row: dict[str, Any]) -> tuple[str, float] | None:
        """(kept id, estimated Jaccard) of the closest earlier near-duplicate, else None (and the row is indexed)."""
        m = self.sketch(row)
        best: tuple[str, float] | None = None
        for cand in self._lsh.query(m):
            sim = float(np.mean(m.hashvalues == self._sketches[cand].hashvalues))
            if sim >= self.cfg.threshold and (best is None or sim > best[1]):
                best = (cand, sim)
        if best is None:
            self._lsh.insert(row["id"], m, check_duplication=False)
            self._sketches[row["id"]] = m
        else:
            self.clusters.setdefault(best[0], []).append({"id": row["id"], "jaccard": round(best[1], 3)})
        return best

    def report(self) -> list[dict[str, Any]]:
        """Clusters, largest first: the kept row and the rows removed as its near-duplicates."""
        items = sorted(self.clusters.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [{"kept": k, "removed": v} for k, v in items[: self.cfg.max_clusters_in_report]]
