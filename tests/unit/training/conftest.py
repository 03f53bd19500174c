"""Training fixtures: the chat data set every training test reads."""
from pathlib import Path

import pytest

from tests.unit.training.support import write_chats


@pytest.fixture(scope="session")
def chat_path(tmp_path_factory) -> Path:
    return write_chats(tmp_path_factory.mktemp("chats") / "train.jsonl")
