from pathlib import Path

from pydantic import BaseModel

from tasks.stage import _paths_exist, transient_only


class _Rec(BaseModel):
    path: Path


def test_cache_key_changes_when_an_input_path_disappears(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text("1")
    inputs = {"rec": _Rec(path=f), "out": tmp_path / "out", "n": 3}
    before = _paths_exist(None, inputs)
    assert _paths_exist(None, inputs) == before
    f.unlink()
    assert _paths_exist(None, inputs) != before


class _State:
    def __init__(self, err):
        self.err = err

    def result(self):
        raise self.err


def test_only_transient_failures_are_retried():
    assert transient_only(None, None, _State(ConnectionError("reset")))
    assert transient_only(None, None, _State(TimeoutError()))
    wrapped = RuntimeError("tracking server")
    wrapped.__cause__ = ConnectionError()
    assert transient_only(None, None, _State(wrapped))
    assert not transient_only(None, None, _State(ValueError("bad config")))
    assert not transient_only(None, None, _State(MemoryError()))


def test_a_real_tracking_outage_is_retried(monkeypatch):
    """What MLflow raises when the server is away: MlflowException over requests' ConnectionError."""
    import socket

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    try:
        MlflowClient(f"http://127.0.0.1:{port}").get_run("0" * 32)
    except MlflowException as err:
        outage = err
    assert type(outage.__context__).__module__ == "requests.exceptions"
    assert transient_only(None, None, _State(outage))
    assert not transient_only(None, None, _State(MlflowException("RESOURCE_DOES_NOT_EXIST: run not found")))
