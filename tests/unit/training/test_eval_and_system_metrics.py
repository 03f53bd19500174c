"""Validation loss during training (every `eval_steps`, on at most `eval_max_rows` rows) and the training stage's
system metrics, as they reach the logger."""
from types import SimpleNamespace

import pytest

from tasks.model import ModelRef
from tasks.training.callbacks import MLflowMetrics
from tasks.training.sft import build_trainer, train_sft
from tests.unit.training.support import fast


class RecordingLogger:
    def __init__(self, system: bool = False):
        self.calls: list[tuple[dict, int | None]] = []
        self.system: list[str] = []
        if system:
            self.start_system_metrics = lambda: self.system.append("start")
            self.stop_system_metrics = lambda: self.system.append("stop")

    def log_metrics(self, metrics, step=None):
        self.calls.append((metrics, step))


def test_an_evaluation_log_is_logged_apart_and_leaves_the_token_clock_alone():
    logger = RecordingLogger()
    cb = MLflowMetrics(logger)
    cb.on_train_begin(None, SimpleNamespace(global_step=0), None)
    cb.on_log(None, SimpleNamespace(global_step=1), None, logs={"loss": 2.0, "num_tokens": 500})
    cb.on_log(None, SimpleNamespace(global_step=1), None,
              logs={"eval_loss": 1.5, "eval_runtime": 0.2, "epoch": 0.5, "eval_note": "x"})
    cb.on_log(None, SimpleNamespace(global_step=2), None, logs={"loss": 1.9, "num_tokens": 1000})
    assert logger.calls[1] == ({"train/eval_loss": 1.5, "train/eval_runtime": 0.2}, 1)
    assert logger.calls[2][0]["train/tokens_per_second"] > 0  # measured from step 1's tokens, not reset by the eval


def test_system_metrics_span_the_training_once():
    logger = RecordingLogger(system=True)
    cb = MLflowMetrics(logger)
    state = SimpleNamespace(global_step=0)
    cb.on_train_begin(None, state, None)
    cb.on_train_begin(None, state, None)  # a second begin (PPO's hand loop, a retry) does not start twice
    cb.on_train_end(None, state, None)
    cb.on_train_end(None, state, None)
    assert logger.system == ["start", "stop"]
    MLflowMetrics(RecordingLogger(), system_metrics=True).on_train_begin(None, state, None)  # a logger without them


def test_validation_loss_is_logged_every_eval_steps_and_at_the_last(tmp_path, tiny_model_dir, chat_path):
    logger = RecordingLogger()
    cfg = fast("lora", max_steps=7, eval_steps=3, eval_max_rows=5)
    result = train_sft(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path, logger=logger,
                       eval_path=chat_path)
    evals = [(m["train/eval_loss"], s) for m, s in logger.calls if "train/eval_loss" in m]
    assert [s for _, s in evals] == [3, 6, 7]  # 3, 6, then the last step: once, the final loss reuses it
    assert all(9 < loss < 11.5 for loss, _ in evals)  # ~ln(49152) = 10.8 for a near-random model
    assert result.eval_loss == pytest.approx(evals[-1][0])
    assert all("train/peak_memory_mb" not in m for m, _ in logger.calls if "train/eval_loss" in m)


def test_the_validation_rows_are_capped(tmp_path, tiny_model_dir, chat_path):
    cfg = fast("lora", eval_max_rows=5)
    trainer = build_trainer(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path,
                            eval_path=chat_path)
    assert len(trainer.eval_dataset) == 5 and trainer.args.eval_steps == cfg.eval_steps
    plain = build_trainer(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path / "plain")
    assert plain.args.eval_strategy == "no"  # no validation split: no evaluation (the trainer would refuse)
