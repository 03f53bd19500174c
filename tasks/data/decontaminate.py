"""Benchmark decontamination: drop rows sharing a word n-gram (13 by default) with an evaluation set.

N-grams are hashed, not stored (see ngrams.py): the benchmarks become one sorted uint64 array and
a whole batch of rows is checked with a single `searchsorted`.
"""
import csv
from pathlib import Path
from typing import Any

import numpy as np

from tasks.data.config import DecontaminationConfig
from tasks.data.errors import DataError
from tasks.data.ngrams import WordHasher, ngram_hashes
from tasks.data.text import words


def _mmlu_items(root: Path) -> list[tuple[str, str]]:
    items = []
    for f in sorted(root.glob("*/*.csv")):
        prefix = f"mmlu/{f.parent.name}/{f.name}"
        with f.open(encoding="utf-8", newline="") as fh:
            for i, row in enumerate(csv.reader(fh), start=1):
                if len(row) < 6:
                    continue
                where = f"{prefix}:{i}"
                answer = row[1 + "ABCD".index(row[5].strip())] if row[5].strip() in ("A", "B", "C", "D") else ""
                items.append((where, f"{row[0]} {answer}"))  # its n-grams include all of the question's
    return items


def _truthfulqa_items(path: Path) -> list[tuple[str, str]]:
    items = []
    with path.open(encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            where = f"truthfulqa/{path.name}:{i}"
            items.append((where, f"{row['Question']} {row['Best Answer']}"))
    return items


class Decontaminator:
    """Holds the hashed n-grams of the configured benchmarks; `match` checks a batch of rows."""

    def __init__(self, cfg: DecontaminationConfig, hasher: WordHasher) -> None:
        self.cfg, self.hasher = cfg, hasher
        self.status: dict[str, str] = {}  # benchmark -> "loaded N items ..." / "missing: path"
        self.hits: list[dict[str, Any]] = []
        root = Path(cfg.benchmarks_dir)
        paths = {"mmlu": root / "mmlu", "truthfulqa": root / "truthfulqa" / "TruthfulQA.csv"}
        loaders = {"mmlu": _mmlu_items, "truthfulqa": _truthfulqa_items}
        items: list[tuple[str, str]] = []
        for name in cfg.benchmarks:
            path = paths[name]
            if not path.exists() or (name == "mmlu" and not any(path.glob("*/*.csv"))):
                if cfg.fail_if_missing:
                    raise DataError(f"decontamination.fail_if_missing is set but benchmark {name!r} is missing at {path}")
                self.status[name] = f"missing: {path} (not checked)"
                continue
            found = loaders[name](path)
            items += found
            self.status[name] = f"loaded {len(found)} items from {path}"
        self._where = [where for where, _ in items]
        h, starts = hasher.flat([words(text) for _, text in items])
        hashes, owner, _ = ngram_hashes(h, starts, cfg.ngram)
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._owner = hashes[order], owner[order]

    def match(self, ids: list[str], docs: list[list[str]], flat: tuple[np.ndarray, np.ndarray] | None = None,
              ) -> list[dict[str, Any] | None]:  # fmt: skip
        """Per row: {"id", "benchmark": file:line, "ngram": text} of its first shared n-gram, else None.

        `flat` is `self.hasher.flat(docs)` when the caller already has it."""
        out: list[dict[str, Any] | None] = [None] * len(docs)
        if not len(self._hashes) or not docs:
            return out
        h, starts = flat if flat is not None else self.hasher.flat(docs)
        hs, doc, pos = ngram_hashes(h, starts, self.cfg.ngram)
        at = np.searchsorted(self._hashes, hs).clip(max=len(self._hashes) - 1)
        for k in np.flatnonzero(self._hashes[at] == hs):
            d, p = int(doc[k]), int(pos[k])
            if out[d] is None:
                out[d] = {"id": ids[d], "benchmark": self._where[int(self._owner[at[k]])],
                          "ngram": " ".join(docs[d][p : p + self.cfg.ngram])}  # fmt: skip
                self.hits.append(out[d])
        return out
