"""Shared fixtures: a tiny random Llama (seconds on CPU) and MLflow pointed at a temp folder."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

SHARED_DATA = Path(os.environ.get("TUNEFORGE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data sets beside the project (MMLU, TruthfulQA, HH-RLHF)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data not found at {SHARED_DATA}; set TUNEFORGE_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-dim random Llama saved with SmolLM2's real tokenizer (so chat templates and vocab are real)."""
    from tests.helpers import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_model(out)
    return out


@pytest.fixture()
def mlflow_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow
    from mlflow.tracking import fluent

    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)  # set_experiment elsewhere must not leak in
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def prefect_harness():
    """A throwaway Prefect server and database for flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
