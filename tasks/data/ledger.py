"""Row accounting: every input row is either kept or dropped for one named reason, with a quarantine entry."""
import hashlib
import json
from collections import Counter
from typing import Any, TextIO


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class Ledger:
    """Counts rows in and drops per reason; `quarantine` holds one entry per dropped row until `flush`."""

    def __init__(self) -> None:
        self.rows_in = 0
        self.dropped: Counter[str] = Counter()
        self.quarantine: list[dict[str, Any]] = []

    def drop(self, rid: str, source: str, reason: str, detail: Any, row: dict[str, Any] | None = None,
             hide: bool = False) -> None:  # fmt: skip
        """Record a dropped row; `hide` stores only a sha256 of the row (PII must never be written in clear)."""
        self.dropped[reason] += 1
        entry: dict[str, Any] = {"id": rid, "source": source, "reason": reason, "detail": detail}
        if row is not None:
            entry["sha256" if hide else "row"] = sha256_json(row) if hide else row
        self.quarantine.append(entry)

    def flush(self, fh: TextIO) -> None:
        """Write the pending quarantine entries as JSON lines and forget them (memory stays per batch)."""
        for entry in self.quarantine:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.quarantine.clear()

    def take(self) -> "Ledger":
        """What was recorded since the last `take`, as a ledger of its own; this one starts afresh.

        Reading ahead (engine dask reads the next batch while the workers scan this one) keeps each batch's
        reading apart this way, so its bad rows land in the quarantine at the same place as without read-ahead."""
        taken = Ledger()
        taken.rows_in, taken.dropped, taken.quarantine = self.rows_in, self.dropped, self.quarantine
        self.rows_in, self.dropped, self.quarantine = 0, Counter(), []
        return taken

    def absorb(self, other: "Ledger") -> None:
        """Add `other`'s rows, drops and pending quarantine entries after this one's."""
        self.rows_in += other.rows_in
        self.dropped.update(other.dropped)
        self.quarantine += other.quarantine

    def counts(self, rows_kept: int, **extra: int) -> dict[str, int]:
        """rows_in, rows_kept, dropped_<reason>, plus `extra`; asserts that the books balance."""
        dropped = sum(self.dropped.values())
        assert self.rows_in == rows_kept + dropped, (
            f"row accounting is off: {self.rows_in} in != {rows_kept} kept + {dropped} dropped {dict(self.dropped)}"
        )
        out = {"rows_in": self.rows_in, "rows_kept": rows_kept}
        out |= {f"dropped_{r}": n for r, n in sorted(self.dropped.items())}
        return out | extra
