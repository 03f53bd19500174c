"""`prepare()`: the data stage from configured sources to train/validation JSONL, quarantine and report.

Order: license gate (before anything is read) -> per batch of rows, streamed: read + normalise,
PII, exact dedup, decontamination, near dedup, token-length bounds, source weights -> seeded split
-> great-expectations validation -> everything written to a temp folder and moved into `out_dir`.
With `engine: dask` the per-row part of each batch (PII, dedup keys, MinHash sketches) is scanned on
a Dask cluster and every decision is still taken here, in input order (engine.py).
"""
import hashlib
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import BaseModel

from tasks.data.config import DataConfig, SourceConfig
from tasks.data.engine import Batch, open_engine
from tasks.data.errors import DataError, LicenseBlocked, ValidationFailed
from tasks.data.filter import RowFilter
from tasks.data.ingest import SourceRows, kind_of
from tasks.data.ledger import Ledger
from tasks.data.license import check_licenses
from tasks.data.pii_recognizers import spacy_model_missing
from tasks.data.text import token_counts
from tasks.data.validate import ValidationFrame, validate_rows

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
    kind: Literal["sft", "preference", "kto", "text", "classification"]
    # classification only: rows per label in train.jsonl (upsampled copies included) and validation.jsonl
    labels: dict[str, dict[str, int]] | None = None

    def summary(self) -> str:
        """One line for the terminal: rows in and kept, the split, what was dropped and why, PII handled."""
        c = self.counts
        line = (f"{c.get('rows_in', 0)} in, {c.get('rows_kept', 0)} kept ({c.get('rows_train', 0)} train, "
                f"{c.get('rows_validation', 0)} validation)")
        dropped = [f"{n} {k.removeprefix('dropped_').replace('_', ' ')}" for k, n in c.items()
                   if k.startswith("dropped_") and n]
        if dropped:
            line += "; dropped " + ", ".join(dropped)
        return line + "".join(f"; {n} PII {verb}" for verb, n in self._pii_handled().items())

    def _pii_handled(self) -> dict[str, int]:
        """PII occurrences by what was done with them (redacted, dropped, kept), from the report."""
        import json

        try:
            pii = json.loads(Path(self.report_path).read_text()).get("pii") or {}
        except (OSError, ValueError):
            return {}
        verbs = {"redact": "redacted", "drop": "dropped", "keep": "kept"}
        out: dict[str, int] = {}
        for kind, n in (pii.get("found") or {}).items():
            verb = verbs.get((pii.get("actions") or {}).get(kind, "redact"), "found")
            out[verb] = out.get(verb, 0) + n
        return {verb: n for verb, n in out.items() if n}


BATCH = 8192  # rows per batch through the filters: big enough for numpy, small enough to stay in cache


def prepare(cfg: DataConfig, out_dir: Path, tokenizer: Any = None,
            check_kind: Callable[[str], None] | None = None) -> PreparedData:
    """Run the whole data stage; on any error nothing is written to `out_dir`.

    Rows stream from the sources through the filters into a temporary kept-rows file, a batch at a
    time; only per-row keys, sketches and scalar columns stay in memory, never the rows. `check_kind`
    sees the data's kind as soon as the first row is read (the recipe raises there on a mismatch).
    """
    out_dir = Path(out_dir)
    decisions = check_licenses(cfg.sources, cfg.license)
    names_here = cfg.engine == "local" and cfg.pii.enabled and cfg.pii.names == "required"  # dask: the workers check
    if names_here and (missing := spacy_model_missing(cfg.pii.spacy_model)):
        raise DataError(f"pii.names=required but {missing}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        prepared = _prepare_into(tmp, cfg, tokenizer, check_kind, decisions)
        _move_into(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    docs = prepared.pop("docs")
    return PreparedData(
        train_path=out_dir / "train.jsonl", validation_path=out_dir / "validation.jsonl",
        quarantine_path=out_dir / "quarantine.jsonl", report_path=out_dir / "report.json",
        data_docs_path=out_dir / docs.relative_to(tmp) if docs else None,
        licenses={d["source"]: d["license"] for d in decisions}, **prepared,
    )  # fmt: skip


def _prepare_into(tmp: Path, cfg: DataConfig, tokenizer: Any, check_kind: Callable[[str], None] | None,
                  licenses: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """Everything after the license gate, written into `tmp`; returns counts, digest, kind and the docs path."""
    clock = _Clock()
    ledger = Ledger()
    kept = _KeptRows(tmp / "kept.jsonl")
    formats: dict[str, str] = {}
    with open_engine(cfg, tmp / "dask") as engine, (tmp / "quarantine.jsonl").open("w", encoding="utf-8") as quarantine:
        filters = RowFilter(cfg, ledger, scan_here=cfg.engine == "local")  # loads while Dask workers warm up
        admit = _Admission(cfg, ledger, tokenizer, kept)
        for src in cfg.sources:
            for batch, scanned in engine.scan(_batches(src, cfg.on_bad_row)):
                ledger.absorb(batch.read)
                if batch.rows:
                    if src.name not in formats:
                        formats[src.name] = batch.format
                        kind = kind_of(formats)
                        if check_kind is not None and len(formats) == 1:
                            check_kind(kind)
                        kept.start(kind)
                    survivors, keys = filters.run(batch.rows, scanned)
                    admit(survivors, keys)
                ledger.flush(quarantine)
            formats.setdefault(src.name, batch.format)
    kind = kind_of(formats)
    kept.close()
    clock.lap("read_filter")
    clock.laps |= {f"of_which_{k}": round(v, 3) for k, v in filters.seconds.items()}
    if not kept.n:
        raise DataError(f"no rows left after preparation: {dict(ledger.dropped)} dropped of {ledger.rows_in}")
    train, validation = _split(kept.n, cfg)
    train_rows, upsampled, labels = _write_split(kept, train, validation, cfg, tmp)
    counts = ledger.counts(kept.n, rows_train=train_rows, rows_validation=len(validation), rows_upsampled=upsampled)
    clock.lap("split")
    validation_summary, docs = validate_rows(kept.frame, cfg.validation, tmp, unique_text=cfg.dedup.enabled)
    clock.lap("validate")
    report = {"kind": kind, "digest": kept.digest.hexdigest(), "counts": counts, "formats": formats,
              **({"labels": labels} if labels is not None else {}),
              "licenses": licenses, **filters.report(), "validation": validation_summary,
              "timings_s": clock.laps, "config": cfg.model_dump(mode="json")}  # fmt: skip
    (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return {"counts": counts, "digest": report["digest"], "kind": kind, "labels": labels, "docs": docs}


def _batches(src: SourceConfig, on_bad_row: str) -> Iterator[Batch]:
    """A source's rows in batches of BATCH, each with what reading it recorded; the last batch may be empty
    (it then carries only the bad rows read after the last full one)."""
    reading = Ledger()
    rows = SourceRows(src, on_bad_row, reading)
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield Batch(batch, rows.format, reading.take())
            batch = []
    yield Batch(batch, rows.format, reading.take())


class _KeptRows:
    """Kept rows as JSON lines in a temporary file, their digest, and the validation frame's scalar columns."""

    def __init__(self, path: Path) -> None:
        self.path, self.n = path, 0
        self.digest = hashlib.sha256()  # of the lines joined by "\n": the data's identity for caching
        self.frame: ValidationFrame | None = None
        self._fh = path.open("w", encoding="utf-8")

    def start(self, kind: str) -> None:
        if self.frame is None:
            self.frame = ValidationFrame(kind)

    def add(self, row: dict[str, Any], n_tokens: int, dedup_key: str) -> None:
        line = json.dumps(row, ensure_ascii=False, sort_keys=True)
        self.digest.update(("\n" + line if self.n else line).encode("utf-8"))
        self._fh.write(line + "\n")
        self.frame.add(row, n_tokens, dedup_key)
        self.n += 1

    def close(self) -> None:
        self._fh.close()

    def lines(self) -> Iterator[str]:
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                yield line.rstrip("\n")


class _Admission:
    """The last two gates before a row is kept: token-length bounds (tokenizer tokens, else whitespace
    words), then source weights < 1 keeping a seeded fraction (one random stream across batches)."""

    def __init__(self, cfg: DataConfig, ledger: Ledger, tokenizer: Any, kept: _KeptRows) -> None:
        self.lo, self.hi = cfg.validation.min_tokens, cfg.validation.max_tokens
        self.weights = {s.name: s.weight for s in cfg.sources}
        self.rng = random.Random(cfg.seed)
        self.ledger, self.tokenizer, self.kept = ledger, tokenizer, kept

    def __call__(self, rows: list[dict[str, Any]], keys: list[str]) -> None:
        lo, hi = self.lo, self.hi
        for row, key, n in zip(rows, keys, token_counts(rows, self.tokenizer)):
            w = self.weights[row["source"]]
            if not lo <= n <= hi:
                self.ledger.drop(row["id"], row["source"], "length", f"{n} tokens outside [{lo}, {hi}]", row)
            elif w < 1.0 and self.rng.random() >= w:
                self.ledger.drop(row["id"], row["source"], "mix_weight", f"source weight {w}", row)
            else:
                self.kept.add(row, n, key)


def _split(n: int, cfg: DataConfig) -> tuple[range, set[int]]:
    """Seeded split of row indices; validation gets round(n * fraction) (at least one when fraction > 0 and n > 1)."""
    n_val = round(n * cfg.validation_fraction)
    if cfg.validation_fraction > 0 and n > 1:
        n_val = max(1, min(n_val, n - 1))
    return range(n), set(random.Random(cfg.seed).sample(range(n), n_val))


def _write_split(kept: _KeptRows, rows: range, validation: set[int], cfg: DataConfig,
                 out: Path) -> tuple[int, int, dict[str, dict[str, int]] | None]:  # fmt: skip
    """Stream the kept rows into train.jsonl and validation.jsonl; (train lines, upsampled copies, label counts).

    Sources with weight > 1 repeat their training rows (ids get a `#rN` suffix); validation is never repeated.
    Label counts ({"train": {label: rows}, "validation": ...}, labels sorted) only for classification rows.
    """
    weights = {s.name: s.weight for s in cfg.sources}
    sources = kept.frame.columns["source"]
    labels = kept.frame.columns["label"] if kept.frame.kind == "classification" else None
    per_label: dict[str, Counter] = {"train": Counter(), "validation": Counter()}
    rng = random.Random(cfg.seed + 1)
    n_train = extra = 0
    with (out / "train.jsonl").open("w", encoding="utf-8") as train, (out / "validation.jsonl").open("w", encoding="utf-8") as val:
        for i, line in zip(rows, kept.lines()):
            if i in validation:
                val.write(line + "\n")
                if labels is not None:
                    per_label["validation"][labels[i]] += 1
                continue
            train.write(line + "\n")
            n_train += 1
            w = weights[sources[i]]
            copies = 0 if w <= 1.0 else int(w) - 1 + (rng.random() < w - int(w))
            if labels is not None:
                per_label["train"][labels[i]] += 1 + copies
            if not copies:
                continue
            row = json.loads(line)
            for k in range(1, copies + 1):
                train.write(json.dumps(row | {"id": f"{row['id']}#r{k}"}, ensure_ascii=False, sort_keys=True) + "\n")
            n_train += copies
            extra += copies
    kept.path.unlink()
    if labels is None:
        return n_train, extra, None
    return n_train, extra, {split: dict(sorted(c.items())) for split, c in per_label.items()}


class _Clock:
    """Seconds per stage, for the report (the bench reads them)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 3)
        self._t = now


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
