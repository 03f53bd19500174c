"""Training fixtures: the chat data set every training test reads."""
from pathlib import Path

import pytest

from tests.unit.training.support import write_chats


@pytest.fixture(scope="session")
def chat_path(tmp_path_factory) -> Path:
    return write_chats(tmp_path_factory.mktemp("chats") / "train.jsonl")


@pytest.fixture(scope="session")
def sft_tiny_dir(tiny_model_dir, chat_path, tmp_path_factory) -> Path:
    """The tiny model after a few full SFT steps on the chats: a policy whose replies already look like answers,
    so that an RL reward has something to select from (a random model samples 49k tokens uniformly)."""
    from tasks.model import ModelRef
    from tasks.training.sft import train_sft
    from tests.unit.training.support import fast

    out = tmp_path_factory.mktemp("sft_tiny")
    return train_sft(fast("full", max_steps=30), ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path,
                     out).model_dir
