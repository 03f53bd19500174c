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
