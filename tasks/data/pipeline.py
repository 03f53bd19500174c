"""`prepare()`: the data stage from configured sources to train/validation JSONL, quarantine and report.

Order: license gate (before anything is read) -> read + normalise -> per row: PII, exact dedup,
decontamination, near dedup -> token-length bounds -> source weights -> seeded split ->
great-expectations validation -> write everything to a temp folder and move it into `out_dir`.
"""
import hashlib
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from tqdm import tqdm

from tasks.data.config import DataConfig
from tasks.data.errors import DataError, LicenseBlocked, ValidationFailed
from tasks.data.filter import filter_rows
from tasks.data.ingest import ingest, kind_of
from tasks.data.ledger import Ledger, sha256_json
from tasks.data.license import check_licenses
from tasks.data.text import token_count
from tasks.data.validate import validate_rows

__all__ = ["DataError", "LicenseBlocked", "PreparedData", "ValidationFailed", "prepare"]


class PreparedData(BaseModel):
    """Where the prepared data landed and what happened to it."""

    train_path: Path
    validation_path: Path
    quarantine_path: Path
    report_path: Path
    data_docs_path: Path | None
    counts: dict[str, int]
    digest: str
    licenses: dict[str, str]
    kind: Literal["sft", "preference", "kto", "text"]


def prepare(cfg: DataConfig, out_dir: Path, tokenizer: Any = None) -> PreparedData:
    """Run the whole data stage; on any error nothing is written to `out_dir`."""
    out_dir = Path(out_dir)
    clock = _Clock()
    decisions = check_licenses(cfg.sources, cfg.license)
    ledger = Ledger()
    rows, formats = [], {}
    for src in cfg.sources:
        src_rows, formats[src.name] = ingest(src, cfg.on_bad_row, ledger)
        rows += src_rows
    kind = kind_of(formats)
    clock.lap("read")
    kept, stages = filter_rows(rows, cfg, ledger)
    clock.lap("filter")
    kept, lengths = _length_bounds(kept, cfg, ledger, tokenizer)
    kept, lengths = _subsample(kept, lengths, cfg, ledger)
    if not kept:
        raise DataError(f"no rows left after preparation: {dict(ledger.dropped)} dropped of {ledger.rows_in}")
    train, validation = _split(kept, cfg)
    train, upsampled = _upsample(train, cfg)
    counts = ledger.counts(len(kept), rows_train=len(train), rows_validation=len(validation), rows_upsampled=upsampled)
    digest = hashlib.sha256("\n".join(sha256_json(r) for r in kept).encode()).hexdigest()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        clock.lap("split")
        validation_summary, docs = validate_rows(kept, lengths, kind, cfg.validation, tmp, unique_text=cfg.dedup.enabled)
        clock.lap("validate")
        _write_jsonl(tmp / "train.jsonl", train)
        _write_jsonl(tmp / "validation.jsonl", validation)
        _write_jsonl(tmp / "quarantine.jsonl", ledger.quarantine)
        report = {"kind": kind, "digest": digest, "counts": counts, "formats": formats, "licenses": decisions,
                  **stages, "validation": validation_summary, "timings_s": clock.laps, "config": cfg.model_dump(mode="json")}  # fmt: skip
        (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        _move_into(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PreparedData(
        train_path=out_dir / "train.jsonl", validation_path=out_dir / "validation.jsonl",
        quarantine_path=out_dir / "quarantine.jsonl", report_path=out_dir / "report.json",
        data_docs_path=out_dir / docs.relative_to(tmp) if docs else None, counts=counts, digest=digest,
        licenses={d["source"]: d["license"] for d in decisions}, kind=kind,
    )  # fmt: skip


def _length_bounds(rows: list[dict[str, Any]], cfg: DataConfig, ledger: Ledger, tokenizer: Any) -> tuple[list, list]:
    """Drop rows outside [min_tokens, max_tokens] (tokenizer tokens, else whitespace words)."""
    lo, hi = cfg.validation.min_tokens, cfg.validation.max_tokens
    kept, lengths = [], []
    for row in rows:
        n = token_count(row, tokenizer)
        if lo <= n <= hi:
            kept.append(row)
            lengths.append(n)
        else:
            ledger.drop(row["id"], row["source"], "length", f"{n} tokens outside [{lo}, {hi}]", row)
    return kept, lengths


def _subsample(rows: list[dict[str, Any]], lengths: list[int], cfg: DataConfig, ledger: Ledger) -> tuple[list, list]:
    """Sources with weight < 1 keep a seeded fraction of their rows; the rest are dropped as `mix_weight`."""
    weights = {s.name: s.weight for s in cfg.sources}
    rng = random.Random(cfg.seed)
    kept, kept_len = [], []
    for row, n in zip(rows, lengths):
        w = weights[row["source"]]
        if w < 1.0 and rng.random() >= w:
            ledger.drop(row["id"], row["source"], "mix_weight", f"source weight {w}", row)
        else:
            kept.append(row)
            kept_len.append(n)
    return kept, kept_len


def _split(rows: list[dict[str, Any]], cfg: DataConfig) -> tuple[list, list]:
    """Seeded split; validation gets round(n * fraction) rows (at least one when the fraction is > 0 and n > 1)."""
    n_val = round(len(rows) * cfg.validation_fraction)
    if cfg.validation_fraction > 0 and len(rows) > 1:
        n_val = max(1, min(n_val, len(rows) - 1))
    picked = set(random.Random(cfg.seed).sample(range(len(rows)), n_val))
    return [r for i, r in enumerate(rows) if i not in picked], [r for i, r in enumerate(rows) if i in picked]


def _upsample(train: list[dict[str, Any]], cfg: DataConfig) -> tuple[list, int]:
    """Sources with weight > 1 repeat their training rows (ids get a `#rN` suffix); validation is never repeated."""
    weights = {s.name: s.weight for s in cfg.sources}
    if all(w <= 1.0 for w in weights.values()):
        return train, 0
    rng = random.Random(cfg.seed + 1)
    out, extra = [], 0
    for row in train:
        out.append(row)
        w = weights[row["source"]]
        copies = int(w) - 1 + (rng.random() < w - int(w)) if w > 1.0 else 0
        for k in range(1, copies + 1):
            out.append(row | {"id": f"{row['id']}#r{k}"})
        extra += copies
    return out, extra


class _Clock:
    """Seconds per stage, for the report (the bench reads them)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 3)
        self._t = now


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def _move_into(tmp: Path, out_dir: Path) -> None:
    """Move the finished files into `out_dir` (renamed whole when it does not exist yet)."""
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    for item in tmp.iterdir():
        dest = out_dir / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        item.replace(dest)
