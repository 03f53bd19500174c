"""Where the data stage's per-row work runs: in this process (`data.engine: local`) or on a Dask cluster (`dask`).

What runs on the workers is `RowScanner.scan` (filter.py): PII redaction, the canonical text's exact-dedup key,
word hashes and MinHash sketches, each a function of one row. Everything that depends on the rows before it stays
in this process and runs in input order, exactly as with the local engine: the exact-dedup key set, decontamination
(one numpy lookup per batch against benchmark n-grams that take seconds to load, from files the workers may not
have), the LSH index and its merge decision, the length and weight gates, the split and every file written. Hence
the output is byte-identical whichever engine ran, and workers read no files: they need only this project installed.

Why `distributed.Client` and not prefect-dask: its `DaskTaskRunner` moves whole Prefect *tasks* onto the cluster,
but this stage is one task (`prepare_data`) streaming batches, and the flow's other tasks (training, evaluation)
must stay where they are; its `get_dask_client` only works inside a task that already runs on such a runner's
cluster. One Client for the stage's duration, fed each batch's partitions, is the least machinery: the same plain
functions in both engines, nothing of Prefect on the workers, and the stage stays testable without Prefect.

`distributed` is imported only when engine dask starts: the local engine never loads it.
"""
import logging
import shutil
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from tasks.data.config import DataConfig, NearDedupConfig, PiiConfig
from tasks.data.dedup import Sketches
from tasks.data.errors import DataError
from tasks.data.filter import RowScanner, ScannedRows
from tasks.data.ledger import Ledger
from tasks.data.ngrams import concat_flat

AHEAD = 1  # batches scanned ahead of the one being decided on: the workers scan while this process decides
PARTS_PER_SLOT = 2  # partitions of a batch per worker thread: a slow partition does not hold up the others
WAIT_FOR_WORKERS_S = 60  # a remote scheduler with no worker after this long is an error, not a hang


class Batch(NamedTuple):
    """Rows of one source as read, with what reading them recorded."""

    rows: list[dict[str, Any]]
    format: str  # the source's format as known once these rows were read
    read: Ledger  # rows read and bad rows quarantined while reading them (kept apart for read-ahead)


class Engine(Protocol):
    def scan(self, batches: Iterator[Batch]) -> Iterator[tuple[Batch, ScannedRows | None]]:
        """Each batch in order with its scan; None: the filters scan it themselves."""


class LocalEngine:
    """Scanning happens inside `RowFilter.run`, one batch at a time, in this process."""

    def scan(self, batches: Iterator[Batch]) -> Iterator[tuple[Batch, ScannedRows | None]]:
        return ((batch, None) for batch in batches)


def open_engine(cfg: DataConfig, scratch: Path) -> AbstractContextManager[Engine]:
    """The configured engine, ready to scan; Dask's spill files go under `scratch` (inside the stage's temp folder)."""
    return nullcontext(LocalEngine()) if cfg.engine == "local" else DaskEngine(cfg, scratch)


class _Rows:
    """A partition's rows in an opaque box: Dask would otherwise walk every dict of every row looking for futures."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows


@lru_cache(maxsize=2)
def _worker_scanner(pii_json: str, near_dedup_json: str) -> RowScanner:
    """One scanner per worker process and config: the PII recognizers load once per worker, not once per task."""
    return RowScanner(PiiConfig.model_validate_json(pii_json), NearDedupConfig.model_validate_json(near_dedup_json))


def dask_setup(worker: Any) -> None:
    """Preload hook of the workers of the LocalCluster this engine starts (`preload=[__name__]`; a remote cluster's
    workers are left alone): once a worker has closed, its process ends without tearing down torch and spaCy module
    by module, which takes 2-4 s on 2 cores, past which the nanny kills it and logs a warning."""
    import atexit
    import os

    atexit.register(os._exit, 0)


def _warm_up(pii_json: str, near_dedup_json: str) -> None:
    _worker_scanner(pii_json, near_dedup_json)


def scan_partition(part: _Rows, pii_json: str, near_dedup_json: str) -> ScannedRows:
    """What a worker runs: `RowScanner.scan` with sketches. Rows the scan left unchanged go back as None (the
    driver has them), and words are left out (the driver recomputes the few it quotes)."""
    out = _worker_scanner(pii_json, near_dedup_json).scan(part.rows, sketch=True)
    out.rows = [None if new is old else new for new, old in zip(out.rows, part.rows)]
    out.docs = None
    return out


def _join(parts: list[ScannedRows], rows: list[dict[str, Any]]) -> ScannedRows:
    """The partitions' scans as one scan of the batch, input order kept; unchanged rows filled back in."""
    sketches = [p.sketches for p in parts]
    return ScannedRows(
        rows=[new if new is not None else old for new, old in zip((r for p in parts for r in p.rows), rows)],
        found=[f for p in parts for f in p.found], drop=[d for p in parts for d in p.drop],
        keys=[k for p in parts for k in p.keys], docs=None, flat=concat_flat([p.flat for p in parts]),
        sketches=Sketches.concat(sketches) if all(s is not None for s in sketches) else None, notes=parts[0].notes,
    )  # fmt: skip


class DaskEngine:
    """Scans each batch on a Dask cluster in partitions, one batch ahead, and hands the scans back in input order."""

    def __init__(self, cfg: DataConfig, scratch: Path) -> None:
        self.cfg, self.scratch = cfg, scratch
        self.sections = (cfg.pii.model_dump_json(), cfg.near_dedup.model_dump_json())  # what the workers scan with
        self.client: Any = None
        self.cluster: Any = None
        self._warm: list[Any] = []
        self.slots = 1

    def __enter__(self) -> "DaskEngine":
        import dask
        from distributed import Client, LocalCluster

        address = self.cfg.dask.address
        try:
            if address is None:
                self.scratch.mkdir(parents=True, exist_ok=True)
                with dask.config.set({"temporary-directory": str(self.scratch)}):  # the scheduler's lock files too
                    self.cluster = LocalCluster(n_workers=self.cfg.dask.n_workers, threads_per_worker=1, processes=True,
                                                dashboard_address=None, silence_logs=logging.ERROR, preload=[__name__])
                self.client = Client(self.cluster)
            else:
                self.client = Client(address)
                self.client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        except Exception as e:  # unreachable scheduler, no workers, worker processes that could not start
            self.__exit__(None, None, None)
            if address is not None:
                raise DataError(f"data.engine=dask: could not use the Dask scheduler at data.dask.address={address}: "
                                f"{type(e).__name__}: {e}") from e  # fmt: skip
            raise DataError(f"data.engine=dask: could not start a Dask LocalCluster: {type(e).__name__}: {e} (from a "
                            "script, call prepare() under `if __name__ == '__main__':`: the worker processes import "
                            "the main module again)") from e  # fmt: skip
        workers = self.client.nthreads()
        self.slots = max(1, sum(workers.values()))
        # every worker starts loading its PII recognizers now, while this process loads the benchmark n-grams and
        # reads the first batch (a long-lived remote worker keeps them: the next run starts warm)
        self._warm = [self.client.submit(_warm_up, *self.sections, workers=[w], pure=False) for w in workers]
        return self

    def __exit__(self, *exc: object) -> None:
        self._warm = []
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
            shutil.rmtree(self.scratch, ignore_errors=True)  # the workers' lock and spill files: not an output
        self.client = self.cluster = None

    def scan(self, batches: Iterator[Batch]) -> Iterator[tuple[Batch, ScannedRows | None]]:
        """Each batch with its scan, in order. AHEAD batches are submitted before the current one is handed back;
        an error reading them is held until the batches before it are through, as without read-ahead."""
        batches = iter(batches)
        pending: deque[tuple[Batch, list[tuple[Any, _Rows]]]] = deque()
        error: BaseException | None = None

        def read_one() -> bool:
            nonlocal error
            try:
                batch = next(batches)
            except StopIteration:
                return False
            except Exception as e:  # a bad row or file: raised once the batches read before it are through
                error = e
                return False
            pending.append((batch, self._submit(batch.rows)))
            return True

        while len(pending) <= AHEAD and read_one():
            pass
        while pending:
            batch, futures = pending.popleft()
            if error is None:
                read_one()
            yield batch, self._gather(futures, batch.rows) if batch.rows else None
        if error is not None:
            raise error

    def _submit(self, rows: list[dict[str, Any]]) -> list[tuple[Any, _Rows]]:
        if not rows:
            return []
        n = min(len(rows), self.slots * PARTS_PER_SLOT)
        bounds = [len(rows) * i // n for i in range(n + 1)]
        parts = [_Rows(rows[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
        return [(self.client.submit(scan_partition, part, *self.sections, pure=False), part) for part in parts]

    def _gather(self, futures: list[tuple[Any, _Rows]], rows: list[dict[str, Any]]) -> ScannedRows:
        """The partitions' results in order; the first failure (in input order) names its rows and source."""
        scans = []
        for i, (future, part) in enumerate(futures):
            try:
                scans.append(future.result())
            except Exception as e:
                self.client.cancel([f for f, _ in futures[i + 1 :]])
                first, last = part.rows[0], part.rows[-1]
                raise DataError(f"data.engine=dask: a worker failed scanning rows {first['id']} to {last['id']} "
                                f"of source {first['source']!r}: {type(e).__name__}: {e}") from e  # fmt: skip
        return _join(scans, rows)
