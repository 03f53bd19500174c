"""One line per finished stage: its name, wall time and what it produced, e.g.

    prepare_data      7.6 s  374 in, 359 kept (323 train, 36 validation); 13 PII redacted

Printed, so the terminal shows it at any log level, and sent to the flow run's log (the Prefect UI's Logs tab).
The last part is the stage result's `summary()`.
"""
from __future__ import annotations

import logging

NAME_WIDTH = 17


def banner(name: str, seconds: float, result: object, cached: bool = False) -> str:
    took = "cached" if cached else f"{seconds:.1f} s"
    summary = result.summary() if callable(getattr(result, "summary", None)) else ""
    return f"{name:<{NAME_WIDTH}}{took:>8}  {summary}".rstrip()


def announce(line: str) -> None:
    print(line, flush=True)
    _run_logger().info(line)


def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:  # a stage called outside a flow (tests)
        return logging.getLogger("tuneforge")
