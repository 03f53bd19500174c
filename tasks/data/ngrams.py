"""Vectorised word n-gram hashing shared by decontamination and near-dedup.

Each distinct word is hashed once with xxh3 (content-based, so identical across runs and
processes, unlike `hash(str)`), and n-gram hashes for a whole batch of rows are one polynomial
rolling combination in numpy; n-grams that would straddle two rows are masked out.
"""
from itertools import chain

import numpy as np
import xxhash

_P = np.uint64(1099511628211)  # FNV prime: odd, so each rolling step stays a bijection


class WordHasher:
    """Caches the 64-bit hash of every word seen (vocabularies are small next to token counts)."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def flat(self, docs: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(word hashes of all docs concatenated, start offsets plus the final end: len(docs) + 1 values)."""
        cache = self._cache
        words = list(chain.from_iterable(docs))
        out = list(map(cache.get, words))  # C-speed lookups; misses are filled below
        for i in [i for i, v in enumerate(out) if v is None]:
            w = words[i]
            v = cache.get(w)
            out[i] = v if v is not None else cache.setdefault(w, xxhash.xxh3_64_intdigest(w.encode()))
        starts = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in docs], out=starts[1:])
        return np.asarray(out, dtype=np.uint64), starts


def ngram_hashes(h: np.ndarray, starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, doc index, position in doc) of every word n-gram lying fully inside one doc."""
    m = len(h) - n + 1
    if m <= 0:
        empty = np.empty(0, dtype=np.int64)
        return np.empty(0, dtype=np.uint64), empty, empty
    acc = h[:m].copy()
    for j in range(1, n):
        acc *= _P
        acc += h[j : j + m]
    pos = np.arange(m)
    doc = np.searchsorted(starts, pos, side="right") - 1
    inside = pos + n <= starts[doc + 1]
    return acc[inside], doc[inside], (pos - starts[doc])[inside]


def shingle_hashes(h: np.ndarray, starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash, doc index) of every n-word shingle; a doc shorter than n words is one shingle of all its words."""
    hs, doc, _ = ngram_hashes(h, starts, n)
    lengths = np.diff(starts)
    short = np.flatnonzero(lengths < n)
    if len(short):
        extra = []
        for d in short:
            acc = np.zeros(1, dtype=np.uint64)
            for v in h[starts[d] : starts[d + 1]]:
                acc = acc * _P + v
            extra.append(acc[0])
        hs, doc = np.concatenate([hs, np.array(extra, dtype=np.uint64)]), np.concatenate([doc, short])
        order = np.argsort(doc, kind="stable")
        hs, doc = hs[order], doc[order]
    return hs, doc


def subset_flat(flat: tuple[np.ndarray, np.ndarray], keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (values, offsets) of the kept docs only, from a flat (values, n + 1 offsets) pair."""
    values, offsets = flat
    lengths = np.diff(offsets)
    new_offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=new_offsets[1:])
    return values[np.repeat(keep, lengths)], new_offsets


def concat_flat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Flat (values, n + 1 offsets) pairs joined into one, docs in order (partitions back into their batch)."""
    if not parts:
        return np.empty(0, dtype=np.uint64), np.zeros(1, dtype=np.int64)
    shifts = np.cumsum([0] + [int(offsets[-1]) for _, offsets in parts[:-1]])
    offsets = np.concatenate([parts[0][1][:1]] + [offsets[1:] + shift for (_, offsets), shift in zip(parts, shifts)])
    return np.concatenate([values for values, _ in parts]), offsets.astype(np.int64)
