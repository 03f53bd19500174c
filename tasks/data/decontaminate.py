"""Benchmark decontamination: drop rows sharing a word n-gram (13 by default) with an evaluation set.

N-grams are hashed, not stored: each word gets a 64-bit hash once, n-gram hashes are a polynomial
rolling combination computed with numpy, and lookup is a `searchsorted` into one sorted array.
"""
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.data.config import DecontaminationConfig
from tasks.data.errors import DataError
from tasks.data.text import canonical, words

_P = np.uint64(1099511628211)  # FNV prime: odd, so the rolling combination stays well mixed
_MASK = (1 << 64) - 1


def ngram_hashes(toks: list[str], n: int) -> np.ndarray:
    """uint64 hash of every n-gram of `toks` (empty when there are fewer than n tokens)."""
    if len(toks) < n:
        return np.empty(0, dtype=np.uint64)
    h = np.fromiter((hash(t) & _MASK for t in toks), dtype=np.uint64, count=len(toks))
    m = len(toks) - n + 1
    acc = h[:m].copy()
    for j in range(1, n):
        acc *= _P
        acc += h[j : j + m]
    return acc


def _mmlu_items(root: Path) -> list[tuple[str, str]]:
    items = []
    for f in sorted(root.glob("*/*.csv")):
        with f.open(encoding="utf-8", newline="") as fh:
            for i, row in enumerate(csv.reader(fh), start=1):
                if len(row) < 6:
                    continue
                where = f"mmlu/{f.parent.name}/{f.name}:{i}"
                answer = row[1 + "ABCD".index(row[5].strip())] if row[5].strip() in ("A", "B", "C", "D") else ""
                items += [(where, row[0]), (where, f"{row[0]} {answer}")]
    return items


def _truthfulqa_items(path: Path) -> list[tuple[str, str]]:
    items = []
    with path.open(encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            where = f"truthfulqa/{path.name}:{i}"
            items += [(where, row["Question"]), (where, f"{row['Question']} {row['Best Answer']}")]
    return items


@dataclass
class Decontaminator:
    """Holds the hashed n-grams of the configured benchmarks; `match` checks one row."""

    cfg: DecontaminationConfig
    status: dict[str, str] = field(default_factory=dict)  # benchmark -> "loaded N items" / "missing: path"
    hits: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        root = Path(self.cfg.benchmarks_dir)
        paths = {"mmlu": root / "mmlu", "truthfulqa": root / "truthfulqa" / "TruthfulQA.csv"}
        loaders = {"mmlu": _mmlu_items, "truthfulqa": _truthfulqa_items}
        hashes, owners, self._where = [], [], []
        for name in self.cfg.benchmarks:
            path = paths[name]
            if not path.exists() or (name == "mmlu" and not any(path.glob("*/*.csv"))):
                if self.cfg.required:
                    raise DataError(f"decontamination.required is set but benchmark {name!r} is missing at {path}")
                self.status[name] = f"missing: {path} (not checked)"
                continue
            items = loaders[name](path)
            for where, text in items:
                hs = ngram_hashes(words(text), self.cfg.ngram)
                hashes.append(hs)
                owners.append(np.full(len(hs), len(self._where), dtype=np.int64))
                self._where.append(where)
            self.status[name] = f"loaded {len(items) // 2} items from {path}"
        all_h = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
        order = np.argsort(all_h, kind="stable")
        self._hashes = all_h[order]
        self._owner = np.concatenate(owners)[order] if owners else np.empty(0, dtype=np.int64)

    def match(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """{"benchmark": where, "ngram": text} for the first shared n-gram, else None (and records the hit)."""
        if not len(self._hashes):
            return None
        toks = words(canonical(row))
        hs = ngram_hashes(toks, self.cfg.ngram)
        if not len(hs):
            return None
        pos = np.searchsorted(self._hashes, hs).clip(max=len(self._hashes) - 1)
        found = np.flatnonzero(self._hashes[pos] == hs)
        if not len(found):
            return None
        i = int(found[0])
        hit = {"id": row["id"], "benchmark": self._where[int(self._owner[pos[i]])],
               "ngram": " ".join(toks[i : i + self.cfg.ngram])}  # fmt: skip
        self.hits.append(hit)
        return hit
