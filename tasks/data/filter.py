"""Row filters in order: PII, exact dedup, benchmark decontamination, near dedup.

PII and exact dedup go row by row; decontamination and near dedup then run as numpy batches
over the survivors (see ngrams.py), which is what keeps the whole stage above 5k rows/s.
"""
from typing import Any

import numpy as np
from tqdm import tqdm

from tasks.data.config import DataConfig
from tasks.data.decontaminate import Decontaminator
from tasks.data.dedup import ExactDeduper, NearDeduper
from tasks.data.ledger import Ledger
from tasks.data.ngrams import WordHasher
from tasks.data.pii import PiiScanner
from tasks.data.text import canonical, words


def filter_rows(rows: list[dict[str, Any]], cfg: DataConfig, ledger: Ledger) -> tuple[list[dict[str, Any]], dict]:
    """(kept rows in input order, report sections); every dropped row goes to the ledger with its reason."""
    hasher = WordHasher()
    pii = PiiScanner(cfg.pii) if cfg.pii.enabled else None
    exact = ExactDeduper() if cfg.dedup.enabled else None
    decon = Decontaminator(cfg.decontamination, hasher) if cfg.decontamination.enabled else None
    near = NearDeduper(cfg.near_dedup, hasher) if cfg.near_dedup.enabled else None

    pii_counts: dict[str, int] = {}
    kept, canon = [], []
    for row in tqdm(rows, desc="pii + exact dedup", unit="row", disable=None, leave=False):
        if pii is not None:
            original = row
            row, found, drop = pii.scan_row(row)
            for t, n in found.items():
                pii_counts[t] = pii_counts.get(t, 0) + n
            if drop:
                ledger.drop(row["id"], row["source"], "pii", sorted(found), original, hide=True)
                continue
        text = canonical(row)
        if exact is not None and (first := exact.first_of(row["id"], text)) is not None:
            ledger.drop(row["id"], row["source"], "exact_duplicate", f"same normalised text as {first}", row)
            continue
        kept.append(row)
        canon.append(text)

    docs = [words(t) for t in canon]
    flat = hasher.flat(docs)
    for stage, reason in ((decon, "contaminated"), (near, "near_duplicate")):
        if stage is None:
            continue
        ids = [r["id"] for r in kept]
        verdicts = decon.match(ids, docs, flat) if stage is decon else near.run(ids, docs, flat)
        keep = np.array([v is None for v in verdicts], dtype=bool)
        for row, v in zip(kept, verdicts):
            if v is not None:
                detail = v if reason == "contaminated" else {"kept": v[0], "jaccard": round(v[1], 3)}
                ledger.drop(row["id"], row["source"], reason, detail, row)
        kept, docs, flat = [r for r, k in zip(kept, keep) if k], [d for d, k in zip(docs, keep) if k], _subset(flat, keep)

    report = {
        "pii": {"enabled": pii is not None, "found": pii_counts, "notes": pii.notes if pii else [],
                "actions": {t: cfg.pii.action(t) for t in pii_counts}},
        "near_duplicates": {"enabled": near is not None, "clusters": near.report() if near else [],
                            "bands": near.bands if near else None, "rows_per_band": near.rows_per_band if near else None},
        "decontamination": {"enabled": decon is not None, "ngram": cfg.decontamination.ngram,
                            "benchmarks": decon.status if decon else {}, "dropped": decon.hits if decon else []},
    }  # fmt: skip
    return kept, report


def _subset(flat: tuple[np.ndarray, np.ndarray], keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat word hashes and offsets of the kept docs only."""
    h, starts = flat
    lengths = np.diff(starts)
    new_starts = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=new_starts[1:])
    return h[np.repeat(keep, lengths)], new_starts
