"""Read one source and normalise its rows; malformed rows raise (naming file and line) or are quarantined."""
from typing import Any

from tqdm import tqdm

from tasks.data.config import SourceConfig
from tasks.data.errors import DataError
from tasks.data.formats import KIND, RowError, detect, normalise
from tasks.data.ledger import Ledger
from tasks.data.read import iter_records


def ingest(src: SourceConfig, on_bad_row: str, ledger: Ledger) -> tuple[list[dict[str, Any]], str]:
    """(normalised rows, format) of one source; the format is detected from its first readable row if "auto"."""
    fmt = None if src.format == "auto" else src.format
    rows: list[dict[str, Any]] = []
    n_in = 0
    for rec in tqdm(iter_records(src), desc=f"read {src.name}", unit="row", disable=None, leave=False):
        ledger.rows_in += 1
        n_in += 1
        try:
            if rec.data is None:
                raise RowError(rec.error)
            if fmt is None:
                fmt = detect(rec.data)
            rows.append(normalise(rec.data, fmt, rec.id, src.name))
        except RowError as e:
            msg = f"{rec.where}: {e}"
            if rec.data is not None and fmt is not None:
                msg += _format_hint(rec.data, fmt, src)
            if on_bad_row == "error":
                raise DataError(f"{msg} (source {src.name!r}; set on_bad_row: skip to quarantine bad rows)") from e
            ledger.drop(rec.id, src.name, "bad_row", msg)
    if n_in == 0:
        raise DataError(f"source {src.name!r}: {src.path} holds no rows")
    return rows, fmt or (src.format if src.format != "auto" else "messages")


def _format_hint(data: dict[str, Any], fmt: str, src: SourceConfig) -> str:
    """Point out a file that is not in its declared format."""
    try:
        seen = detect(data)
    except RowError:
        return f" (expected format {fmt!r})"
    return f" (expected format {fmt!r}, this row looks like {seen!r})" if seen != fmt else ""


def kind_of(formats: dict[str, str]) -> str:
    """The one dataset kind all sources share; mixing SFT with preference rows is a config error."""
    kinds = {name: KIND[fmt] for name, fmt in formats.items()}
    if len(set(kinds.values())) > 1:
        raise DataError(f"sources mix dataset kinds, which cannot be trained together: {kinds}")
    return next(iter(kinds.values()))
