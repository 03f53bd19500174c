"""Row filters in order: PII, exact dedup, benchmark decontamination, near dedup.

`RowFilter.run` takes one batch of rows at a time and keeps its state (dedup keys, LSH index)
across batches, so a file of any length streams through. PII and exact dedup go row by row;
decontamination and near dedup then run as numpy batches over the survivors (see ngrams.py),
which is what keeps the whole stage above 5k rows/s.
"""
import time
from typing import Any

import numpy as np

from tasks.data.config import DataConfig
from tasks.data.decontaminate import Decontaminator
from tasks.data.dedup import ExactDeduper, NearDeduper, exact_key
from tasks.data.ledger import Ledger
from tasks.data.ngrams import WordHasher, subset_flat
from tasks.data.pii import PiiScanner
from tasks.data.text import canonical, words


class RowFilter:
    """Governance filters over batches of normalised rows; every dropped row goes to the ledger with its reason."""

    def __init__(self, cfg: DataConfig, ledger: Ledger) -> None:
        self.cfg, self.ledger = cfg, ledger
        self.hasher = WordHasher()
        self.pii = PiiScanner(cfg.pii) if cfg.pii.enabled else None
        self.exact = ExactDeduper() if cfg.dedup.enabled else None
        self.decon = Decontaminator(cfg.decontamination, self.hasher) if cfg.decontamination.enabled else None
        self.near = NearDeduper(cfg.near_dedup, self.hasher) if cfg.near_dedup.enabled else None
        self.pii_counts: dict[str, int] = {}
        self.seconds = {"pii_exact": 0.0, "decontamination": 0.0, "near_dedup": 0.0}  # for the report's timings

    def run(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """(kept rows of this batch in input order, their exact-dedup keys)."""
        kept, keys, docs = [], [], []
        clock = time.perf_counter()
        for row in rows:
            if self.pii is not None:
                original = row
                row, found, drop = self.pii.scan_row(row)
                for t, n in found.items():
                    self.pii_counts[t] = self.pii_counts.get(t, 0) + n
                if drop:
                    self.ledger.drop(row["id"], row["source"], "pii", sorted(found), original, hide=True)
                    continue
            text = canonical(row)
            key = exact_key(text)
            if self.exact is not None and (first := self.exact.first_of(row["id"], key)) is not None:
                self.ledger.drop(row["id"], row["source"], "exact_duplicate", f"same normalised text as {first}", row)
                continue
            kept.append(row)
            keys.append(key)
            docs.append(words(text))

        flat = self.hasher.flat(docs)
        clock = self._lap("pii_exact", clock)
        for stage, reason in ((self.decon, "contaminated"), (self.near, "near_duplicate")):
            if stage is None or not kept:
                continue
            ids = [r["id"] for r in kept]
            verdicts = stage.match(ids, docs, flat) if reason == "contaminated" else stage.run(ids, docs, flat)
            keep = np.array([v is None for v in verdicts], dtype=bool)
            for row, v in zip(kept, verdicts):
                if v is not None:
                    detail = v if reason == "contaminated" else {"kept": v[0], "jaccard": round(v[1], 3)}
                    self.ledger.drop(row["id"], row["source"], reason, detail, row)
            kept, keys = [r for r, k in zip(kept, keep) if k], [x for x, k in zip(keys, keep) if k]
            docs, flat = [d for d, k in zip(docs, keep) if k], subset_flat(flat, keep)
            clock = self._lap("decontamination" if reason == "contaminated" else "near_dedup", clock)
        return kept, keys

    def _lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now

    def report(self) -> dict[str, Any]:
        """The report sections of the PII, near-dedup and decontamination filters."""
        pii, near, decon = self.pii, self.near, self.decon
        return {
            "pii": {"enabled": pii is not None, "found": self.pii_counts, "notes": pii.notes if pii else [],
                    "actions": {t: self.cfg.pii.action(t) for t in self.pii_counts}},
            "near_duplicates": {"enabled": near is not None, "clusters": near.report() if near else [],
                                "shingle_size": self.cfg.near_dedup.shingle_size, "threshold": self.cfg.near_dedup.threshold,
                                "bands": near.bands if near else None, "rows_per_band": near.rows_per_band if near else None},
            "decontamination": {"enabled": decon is not None, "ngram": self.cfg.decontamination.ngram,
                                "benchmarks": decon.status if decon else {}, "dropped": decon.hits if decon else []},
        }  # fmt: skip
