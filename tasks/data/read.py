"""Read raw records from files, folders and Hugging Face datasets, each tagged with where it came from.

Readers yield `Record`s lazily so a malformed line is reported with its file and line number,
and `on_bad_row="skip"` can turn it into a quarantine entry instead of an exception.
"""
import contextlib
import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.data.config import SourceConfig
from tasks.data.errors import DataError

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class Record:
    """One raw row: `data` is None when the row could not be parsed (then `error` says why)."""

    id: str
    where: str  # "file:line" for humans
    data: dict[str, Any] | None
    error: str | None = None


def is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))


def source_files(path: Path) -> list[Path]:
    """The data files of a source path, sorted so ids are stable."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    if not files:
        raise DataError(f"{path}: folder holds no data files ({', '.join(SUFFIXES)})")
    return files


def iter_records(src: SourceConfig) -> Iterator[Record]:
    """All raw rows of one source, at most `src.max_rows`."""
    path = Path(src.path)
    if not path.exists() and (path.name.endswith(SUFFIXES) or src.path.startswith((".", "/", "~"))):
        raise DataError(f"source {src.name!r}: {path} does not exist")
    if is_hf_dataset_dir(path) or not path.exists():
        rows = _iter_hf(src, path)
    else:
        files = source_files(path)
        rows = (
            rec
            for f in files
            for rec in _iter_file(f, prefix=src.name if path.is_file() else f"{src.name}:{f.relative_to(path)}")
        )
    for i, rec in enumerate(rows):
        if src.max_rows is not None and i >= src.max_rows:
            return
        yield rec


def _open_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from e
    if not raw.strip():
        raise DataError(f"{path}: empty file")
    return raw


def _iter_file(path: Path, prefix: str) -> Iterator[Record]:
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        yield from _iter_jsonl(path, prefix)
    elif name.endswith(".json"):
        yield from _iter_json(path, prefix)
    elif name.endswith(".csv"):
        yield from _iter_csv(path, prefix)
    elif name.endswith(".parquet"):
        yield from _iter_parquet(path, prefix)
    else:
        raise DataError(f"{path}: unsupported file type (expected one of {', '.join(SUFFIXES)})")


def _iter_jsonl(path: Path, prefix: str) -> Iterator[Record]:
    """Line by line from disk (gzip too), so a file of any size costs one line of memory."""
    seen = False
    with _open_lines(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            seen = True
            rid, where = f"{prefix}:{lineno}", f"{path}:{lineno}"
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield Record(rid, where, None, f"not valid UTF-8 ({e.reason} at byte {e.start})")
                continue
            except json.JSONDecodeError as e:
                yield Record(rid, where, None, f"malformed JSON ({e.msg}, column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield Record(rid, where, None, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield Record(rid, where, obj)
    if not seen:
        raise DataError(f"{path}: empty file")


@contextlib.contextmanager
def _open_lines(path: Path) -> Iterator[Iterator[bytes]]:
    """The file's lines as bytes; a corrupt gzip stream is a DataError naming the file, wherever it breaks."""
    fh = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    try:
        yield fh
    except (OSError, EOFError) as e:
        if path.suffix == ".gz":
            raise DataError(f"{path}: not a valid gzip file ({e})") from e
        raise
    finally:
        fh.close()


def _iter_json(path: Path, prefix: str) -> Iterator[Record]:
    raw = _open_bytes(path)
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg}, column {e.colno})") from e
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a JSON list of objects (or {{'data': [...]}}), got {type(obj).__name__}")
    for i, row in enumerate(obj):
        rid, where = f"{prefix}:{i}", f"{path}:[{i}]"
        if isinstance(row, dict):
            yield Record(rid, where, row)
        else:
            yield Record(rid, where, None, f"expected a JSON object, got {type(row).__name__}")


def _iter_csv(path: Path, prefix: str) -> Iterator[Record]:
    raw = _open_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from e
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        lineno = reader.line_num
        rid, where = f"{prefix}:{lineno}", f"{path}:{lineno}"
        if None in row or any(v is None for v in row.values()):
            yield Record(rid, where, None, f"expected {len(reader.fieldnames or [])} CSV columns")
            continue
        yield Record(rid, where, dict(row))


def _iter_parquet(path: Path, prefix: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: not a readable Parquet file ({e})") from e
    if table.num_rows == 0:
        raise DataError(f"{path}: empty file")
    for i, row in enumerate(table.to_pylist()):
        yield Record(f"{prefix}:{i}", f"{path}:[{i}]", row)


def _iter_hf(src: SourceConfig, path: Path) -> Iterator[Record]:
    """A dataset saved with `save_to_disk` (always works offline) or a hub name (needs network)."""
    import datasets

    try:
        if path.exists():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if src.split not in ds:
                    raise DataError(f"{path}: split {src.split!r} not found (have {sorted(ds)})")
                ds = ds[src.split]
        else:
            ds = datasets.load_dataset(src.path, split=src.split)
    except DataError:
        raise
    except Exception as e:  # offline hub, unknown name, corrupt folder
        raise DataError(f"source {src.name!r}: cannot load {src.path!r} as a file, folder or HF dataset ({e})") from e
    if len(ds) == 0:
        raise DataError(f"source {src.name!r}: {src.path} is empty")
    for i, row in enumerate(ds):
        yield Record(f"{src.name}:{i}", f"{src.path}[{i}]", dict(row))
