"""Read one source and normalise its rows, streamed; malformed rows raise (naming file and line) or are quarantined."""
from collections.abc import Iterator
from typing import Any

from tasks.data.config import SourceConfig
from tasks.data.errors import DataError
from tasks.data.formats import KIND, RowError, detect, normalise
from tasks.data.ledger import Ledger
from tasks.data.read import iter_records


class SourceRows:
    """The normalised rows of one source, one at a time; `format` is known once the first readable row is seen."""

    def __init__(self, src: SourceConfig, on_bad_row: str, ledger: Ledger) -> None:
        self.src, self.on_bad_row, self.ledger = src, on_bad_row, ledger
        self.detected: str | None = None if src.format == "auto" else src.format

    @property
    def format(self) -> str:
        return self.detected or (self.src.format if self.src.format != "auto" else "messages")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        src, n_in = self.src, 0
        for rec in iter_records(src):
            self.ledger.rows_in += 1
            n_in += 1
            try:
                if rec.data is None:
                    raise RowError(rec.error)
                if self.detected is None:
                    self.detected = detect(rec.data)
                yield normalise(rec.data, self.detected, rec.id, src.name)
            except RowError as e:
                msg = f"{rec.where}: {e}"
                if rec.data is not None and self.detected is not None:
                    msg += _format_hint(rec.data, self.detected)
                if self.on_bad_row == "error":
                    raise DataError(f"{msg} (source {src.name!r}; set on_bad_row: skip to quarantine bad rows)") from e
                self.ledger.drop(rec.id, src.name, "bad_row", msg)
        if n_in == 0:
            raise DataError(f"source {src.name!r}: {src.path} holds no rows")


def _format_hint(data: dict[str, Any], fmt: str) -> str:
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
