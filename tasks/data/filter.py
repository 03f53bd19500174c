"""Row filters in order: PII, exact dedup, benchmark decontamination, near dedup.

Each batch goes through two steps. `RowScanner.scan` does the work that depends on one row alone
(PII redaction, the canonical text's exact-dedup key and words, optionally near-dedup sketches):
it can run anywhere, on a Dask worker too (engine.py). `RowFilter.run` then takes the decisions
that depend on the rows before, in input order, keeping its state (dedup keys, LSH index) across
batches, so a file of any length streams through. Decontamination and near dedup run as numpy
batches over the survivors (see ngrams.py), which is what keeps the whole stage above 5k rows/s.
"""
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.data.config import DataConfig, NearDedupConfig, PiiConfig
from tasks.data.decontaminate import Decontaminator
from tasks.data.dedup import ExactDeduper, NearDeduper, Sketches, exact_key
from tasks.data.ledger import Ledger
from tasks.data.ngrams import WordHasher, subset_flat
from tasks.data.pii import PiiScanner
from tasks.data.text import canonical, words


@dataclass
class ScannedRows:
    """One batch after `RowScanner.scan`: per input row, then per row not dropped for PII (`flat`, `sketches`)."""

    rows: list[dict[str, Any]]  # PII redacted (the input row itself when nothing was found)
    found: list[dict[str, int]]  # PII occurrences per type
    drop: list[bool]  # a PII type whose action is "drop" was found
    keys: list[str]  # exact-dedup key of the canonical text ("" for dropped rows)
    docs: Sequence[list[str]] | None  # words of the canonical text ([] for dropped rows); None: recomputed on demand
    flat: tuple[np.ndarray, np.ndarray] | None  # word hashes of the rows not dropped; None: hashed by RowFilter
    sketches: Sketches | None  # near-dedup sketches of the rows not dropped; None: sketched by RowFilter
    notes: list[str]  # the PII scanner's notes for the report


class RowScanner:
    """The per-row part of the filters: built once per process (the PII recognizers take seconds to load)."""

    def __init__(self, pii: PiiConfig, near_dedup: NearDedupConfig) -> None:
        self.hasher = WordHasher()
        self.pii = PiiScanner(pii) if pii.enabled else None
        self.near = NearDeduper(near_dedup, self.hasher) if near_dedup.enabled else None

    def scan(self, rows: list[dict[str, Any]], sketch: bool = False) -> ScannedRows:
        """PII and canonical text of every row. With `sketch` (engine dask), also the word hashes and near-dedup
        sketches of every row not dropped for PII; without, `RowFilter` makes them itself for the survivors of
        exact dedup only, which is cheaper in one process."""
        out = ScannedRows([], [], [], [], [], None, None, self.pii.notes if self.pii else [])
        for row in rows:
            found, drop = {}, False
            if self.pii is not None:
                row, found, drop = self.pii.scan_row(row)
            out.rows.append(row)
            out.found.append(found)
            out.drop.append(drop)
            if drop:
                out.keys.append("")
                out.docs.append([])
                continue
            text = canonical(row)
            out.keys.append(exact_key(text))
            out.docs.append(words(text))
        if sketch:
            docs = [d for d, drop in zip(out.docs, out.drop) if not drop]
            out.flat = self.hasher.flat(docs)
            out.sketches = self.near.sketch(docs, out.flat) if self.near is not None else None
        return out


class _Words(Sequence):
    """The words of each row's canonical text, made when asked: a Dask worker's scan sends no words back (they
    would double what crosses the network), and only a decontamination hit reads them, to quote its n-gram."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[str]:  # type: ignore[override]
        return words(canonical(self.rows[i]))


class RowFilter:
    """Governance filters over batches of normalised rows; every dropped row goes to the ledger with its reason.

    `scan_here=False` when every batch arrives scanned already (engine dask): the PII recognizers then never load here.
    """

    def __init__(self, cfg: DataConfig, ledger: Ledger, scan_here: bool = True) -> None:
        self.cfg, self.ledger = cfg, ledger
        self.scanner = RowScanner(cfg.pii, cfg.near_dedup) if scan_here else None
        self.hasher = self.scanner.hasher if self.scanner is not None else WordHasher()
        self.exact = ExactDeduper() if cfg.dedup.enabled else None
        self.decon = Decontaminator(cfg.decontamination, self.hasher) if cfg.decontamination.enabled else None
        self.near = NearDeduper(cfg.near_dedup, self.hasher) if cfg.near_dedup.enabled else None
        self.pii_counts: dict[str, int] = {}
        self.pii_notes: list[str] = []
        self.seconds = {"pii_exact": 0.0, "decontamination": 0.0, "near_dedup": 0.0}  # for the report's timings

    def run(self, rows: list[dict[str, Any]], scanned: ScannedRows | None = None,
            ) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
        """(kept rows of this batch in input order, their exact-dedup keys); `scanned` is `RowScanner.scan(rows)`
        made elsewhere, else the scanner given at construction scans here."""
        clock = time.perf_counter()
        scanned = scanned if scanned is not None else self.scanner.scan(rows)
        self.pii_notes = scanned.notes
        kept, keys, idx, at = [], [], [], []  # idx: input position; at: position among rows not dropped for PII
        n_scanned = 0
        for i, (original, row, found, drop) in enumerate(zip(rows, scanned.rows, scanned.found, scanned.drop)):
            for t, n in found.items():
                self.pii_counts[t] = self.pii_counts.get(t, 0) + n
            if drop:
                self.ledger.drop(row["id"], row["source"], "pii", sorted(found), original, hide=True)
                continue
            n_scanned += 1
            key = scanned.keys[i]
            if self.exact is not None and (first := self.exact.first_of(row["id"], key)) is not None:
                self.ledger.drop(row["id"], row["source"], "exact_duplicate", f"same normalised text as {first}", row)
                continue
            kept.append(row)
            keys.append(key)
            idx.append(i)
            at.append(n_scanned - 1)
        docs = [scanned.docs[i] for i in idx] if scanned.docs is not None else _Words(kept)
        sketches = None
        if scanned.flat is None:
            flat = self.hasher.flat(docs)
        else:
            mask = np.zeros(n_scanned, dtype=bool)
            mask[at] = True
            flat = subset_flat(scanned.flat, mask)
            sketches = scanned.sketches.subset(mask) if scanned.sketches is not None else None
        clock = self._lap("pii_exact", clock)
        for stage, reason in ((self.decon, "contaminated"), (self.near, "near_duplicate")):
            if stage is None or not kept:
                continue
            ids = [r["id"] for r in kept]
            if reason == "contaminated":
                verdicts = stage.match(ids, docs, flat)
            else:
                verdicts = stage.run(ids, docs, flat, sketches)
            keep = np.array([v is None for v in verdicts], dtype=bool)
            for row, v in zip(kept, verdicts):
                if v is not None:
                    detail = v if reason == "contaminated" else {"kept": v[0], "jaccard": round(v[1], 3)}
                    self.ledger.drop(row["id"], row["source"], reason, detail, row)
            kept, keys = [r for r, k in zip(kept, keep) if k], [x for x, k in zip(keys, keep) if k]
            docs = _Words(kept) if isinstance(docs, _Words) else [d for d, k in zip(docs, keep) if k]
            flat = subset_flat(flat, keep)
            sketches = sketches.subset(keep) if sketches is not None else None
            clock = self._lap("decontamination" if reason == "contaminated" else "near_dedup", clock)
        return kept, keys

    def _lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now

    def report(self) -> dict[str, Any]:
        """The report sections of the PII, near-dedup and decontamination filters."""
        near, decon = self.near, self.decon
        return {
            "pii": {"enabled": self.cfg.pii.enabled, "found": self.pii_counts, "notes": self.pii_notes,
                    "actions": {t: self.cfg.pii.action(t) for t in self.pii_counts}},
            "near_duplicates": {"enabled": near is not None, "clusters": near.report() if near else [],
                                "shingle_size": self.cfg.near_dedup.shingle_size, "threshold": self.cfg.near_dedup.threshold,
                                "bands": near.bands if near else None, "rows_per_band": near.rows_per_band if near else None},
            "decontamination": {"enabled": decon is not None, "ngram": self.cfg.decontamination.ngram,
                                "benchmarks": decon.status if decon else {}, "dropped": decon.hits if decon else []},
        }  # fmt: skip
