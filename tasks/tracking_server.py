"""Where a run tracks to, and whether that tracking server answers: light (no MLflow import), so `tuneforge run` can
stop within a second or two when the server is away, before the heavy imports."""
from __future__ import annotations

import os
from pathlib import Path

CHECK_TIMEOUT_S = 5.0


class TrackingUnavailable(ConnectionError):
    """The tracking server did not answer (at start, or for a whole outage budget). A ConnectionError, so the
    stages' retry rule (`transient_only`) treats it as transient."""


def is_transient(err: BaseException | None) -> bool:
    """Network trouble anywhere in the cause chain. MLflow raises an MlflowException whose context is requests'
    ConnectionError (not the builtin one), itself over urllib3's errors, so the whole chain is searched."""
    from requests.exceptions import ConnectionError as RequestsConnectionError, Timeout

    transient = (ConnectionError, TimeoutError, RequestsConnectionError, Timeout)
    for _ in range(16):
        if err is None:
            return False
        if isinstance(err, transient):
            return True
        err = err.__cause__ or err.__context__
    return False


def check_tracking_server(uri: str, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Fail at once, naming the URI, when an HTTP tracking server does not answer its health check.
    Local stores (sqlite, file) need no check."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except requests.RequestException as err:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is not reachable ({type(err).__name__}); start it, or point "
            "MLFLOW_TRACKING_URI / tracking.tracking_uri at one that is up") from None


def tracking_uri(configured: str | None, run_root: Path) -> str:
    """`tracking.tracking_uri` if set, else $MLFLOW_TRACKING_URI, else a SQLite DB under run_root."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    run_root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(run_root / 'mlflow.db').resolve()}"
