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
from typing import Any, Callable, Literal

from pydantic import BaseModel

from tasks.data.config import DataConfig
from tasks.data.errors import DataError, LicenseBlocked, ValidationFailed
from tasks.data.filter import filter_rows
from tasks.data.ingest import ingest, kind_of
from tasks.data.ledger import Ledger
from tasks.data.license import check_licenses
from tasks.data.text import token_counts
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


def prepare(cfg: DataConfig, out_dir: Path, tokenizer: Any = None,
            check_kind: Callable[[str], None] | None = None) -> PreparedData:
    """Run the whole data stage; on any error nothing is written to `out_dir`.

    `check_kind` sees the data's kind as soon as the sources are read (the recipe raises there on a mismatch).
    """
    out_dir = Path(out_dir)
    clock = _Clock()
    decisions = check_licenses(cfg.sources, cfg.license)
    ledger = Ledger()
    rows, formats = [], {}
    for src in cfg.sources:
        src_rows, formats[src.name] = ingest(src, cfg.on_bad_row, ledger)
        rows += src_rows
    kind = kind_of(formats)
    if check_kind is not None:
        check_kind(kind)
    clock.lap("read")
    kept, stages = filter_rows(rows, cfg, ledger)
    clock.lap("filter")
    kept, lengths = _length_bounds(kept, cfg, ledger, tokenizer)
    kept, lengths = _subsample(kept, lengths, cfg, ledger)
    if not kept:
        raise DataError(f"no rows left after preparation: {dict(ledger.dropped)} dropped of {ledger.rows_in}")
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in kept]  # encoded once: digest + files
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    train, validation = _split(list(range(len(kept))), cfg)
    train_lines, upsampled = _upsample(train, kept, lines, cfg)
    counts = ledger.counts(len(kept), rows_train=len(train_lines), rows_validation=len(validation), rows_upsampled=upsampled)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        clock.lap("split")
        validation_summary, docs = validate_rows(kept, lengths, kind, cfg.validation, tmp, unique_text=cfg.dedup.enabled)
        clock.lap("validate")
        _write_lines(tmp / "train.jsonl", train_lines)
        _write_lines(tmp / "validation.jsonl", [lines[i] for i in validation])
        _write_lines(tmp / "quarantine.jsonl", [json.dumps(q, ensure_ascii=False) for q in ledger.quarantine])
        report = {"kind": kind, "digest": digest, "counts": counts, "formats": formats, "licenses": decisions,
                  **stages, "validation": validation_summary, "timings_s": clock.laps,
                  "config": cfg.model_dump(mode="json")}  # fmt: skip
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
    for row, n in zip(rows, token_counts(rows, tokenizer)):
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


def _split(idx: list[int], cfg: DataConfig) -> tuple[list[int], list[int]]:
    """Seeded split of row indices; validation gets round(n * fraction) (at least one when fraction > 0 and n > 1)."""
    n_val = round(len(idx) * cfg.validation_fraction)
    if cfg.validation_fraction > 0 and len(idx) > 1:
        n_val = max(1, min(n_val, len(idx) - 1))
    picked = set(random.Random(cfg.seed).sample(idx, n_val))
    return [i for i in idx if i not in picked], sorted(picked)


def _upsample(train: list[int], rows: list[dict[str, Any]], lines: list[str], cfg: DataConfig) -> tuple[list[str], int]:
    """Training lines; sources with weight > 1 repeat their rows (ids get a `#rN` suffix). Validation is never repeated."""
    weights = {s.name: s.weight for s in cfg.sources}
    rng = random.Random(cfg.seed + 1)
    out, extra = [], 0
    for i in train:
        out.append(lines[i])
        w = weights[rows[i]["source"]]
        if w <= 1.0:
            continue
        copies = int(w) - 1 + (rng.random() < w - int(w))
        for k in range(1, copies + 1):
            out.append(json.dumps(rows[i] | {"id": f"{rows[i]['id']}#r{k}"}, ensure_ascii=False, sort_keys=True))
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


def _write_lines(path: Path, lines: list[str]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")


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
