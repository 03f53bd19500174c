"""The Prefect stage: it logs tokens-per-word before and after, and the tokenizer folder only when tokens were added."""
import json
from types import SimpleNamespace

from mlflow import MlflowClient

from tasks.extend_tokenizer import extend_tokenizer
from tasks.model import ModelRef
from tasks.stage import RunRef
from tasks.tracking import RunLogger
from tasks.vocab import MineConfig, TokenizerConfig


def _train(path):
    row = {"messages": [{"role": "user", "content": "Does Stratovault prune old snapshots?"},
                        {"role": "assistant", "content": "Yes, Stratovault prunes them nightly."}]}
    path.write_text((json.dumps(row) + "\n") * 10)
    return path


def _data(tmp_path):
    """The one field of the data stage's result this stage reads."""
    return SimpleNamespace(train_path=_train(tmp_path / "train.jsonl"))


def _run(uri, tmp_path, digest):
    logger, _ = RunLogger.start_or_resume(uri, "exp", "r", digest, tmp_path / "art")
    return RunRef(run_id=logger.run_id, tracking_uri=uri)


def test_stage_logs_tokens_per_word_and_the_extended_tokenizer(tiny_model_dir, tmp_path, mlflow_uri):
    run = _run(mlflow_uri, tmp_path, "a")
    cfg = TokenizerConfig(mine=MineConfig(enabled=True, min_count=10))
    result = extend_tokenizer.fn(cfg, ModelRef.of(str(tiny_model_dir)), _data(tmp_path), tmp_path / "out", run)
    assert result.mined == ["Stratovault"] and result.added == [" Stratovault"]  # never at a line start here
    client = MlflowClient(mlflow_uri)
    metrics = client.get_run(run.run_id).data.metrics
    assert metrics["tokenizer/added_tokens"] == 1 and metrics["tokenizer/mined_terms"] == 1
    assert metrics["tokenizer/tokens_per_word_before"] == result.tokens_per_word_before
    assert metrics["tokenizer/tokens_per_word_after"] == result.tokens_per_word_after
    assert metrics["tokenizer/tokens_per_word_after"] < metrics["tokenizer/tokens_per_word_before"]
    logged = {a.path for a in client.list_artifacts(run.run_id, "tokenizer")}
    assert {"tokenizer/new_embeddings.safetensors", "tokenizer/extension.json", "tokenizer/tokenizer.json"} <= logged


def test_no_op_stage_logs_metrics_but_no_tokenizer(tiny_model_dir, tmp_path, mlflow_uri):
    run = _run(mlflow_uri, tmp_path, "b")
    result = extend_tokenizer.fn(TokenizerConfig(), ModelRef.of(str(tiny_model_dir)), _data(tmp_path),
                                 tmp_path / "out", run)
    client = MlflowClient(mlflow_uri)
    assert result.added == [] and client.get_run(run.run_id).data.metrics["tokenizer/added_tokens"] == 0
    assert client.list_artifacts(run.run_id) == []
