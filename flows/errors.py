"""Expected failures (a bad config, bad data, the drift gate saying no) end a command with their message and a
non-zero exit, no traceback: the message names the key, the file and line, or the metric. Anything else keeps
its traceback, and so does every error under `--debug`.
"""
from __future__ import annotations

import sys

from tasks.config import ConfigError
from tasks.data.errors import DataError

EXIT_CONFIG = 2  # argparse's code for bad usage, as `python -m flows` has always exited on a bad config
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def expected_types() -> tuple[type[BaseException], ...]:
    """ConfigError and DataError, plus the flow-time ones whose modules are loaded (importing them here would pull
    Prefect and MLflow into a config check)."""
    found: list[type[BaseException]] = [ConfigError, DataError]
    for module, names in (("flows.run", ("DriftGateFailed",)),
                          ("tasks.tracking_server", ("TrackingUnavailable",)), ("tasks.tracking", ("RunFolderBusy",))):
        loaded = sys.modules.get(module)
        found += [getattr(loaded, n) for n in names if loaded is not None and hasattr(loaded, n)]
    return tuple(found)


def expected_error(err: BaseException) -> BaseException | None:
    """`err`, or the expected error it wraps: explicit causes (`raise ... from`) are followed, and the implicit
    context of Prefect's own wrappers. None when the failure is unexpected."""
    expected, seen = expected_types(), 0
    while err is not None and seen < 16:
        if isinstance(err, expected):
            return err
        wrapper = type(err).__module__.split(".")[0] == "prefect"
        err, seen = err.__cause__ or (err.__context__ if wrapper else None), seen + 1
    return None


def report(err: BaseException) -> int:
    """Print an expected error's message to stderr; return the command's exit code."""
    if isinstance(err, ConfigError):  # its message starts with the file and lists the keys
        print(err, file=sys.stderr)
        return EXIT_CONFIG
    print(f"error: {err}", file=sys.stderr)
    return EXIT_FAILED
