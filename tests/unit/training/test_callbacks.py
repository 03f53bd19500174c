"""Per-step metrics (non-padding tokens/s, peak memory) and AdaLoRA's budget callback."""
import time
from types import SimpleNamespace

import pytest

from tasks.model import ModelRef
from tasks.training.callbacks import AdaLoRABudget, MLflowMetrics, peak_memory_mb
from tasks.training.sft import build_trainer
from tests.unit.training.support import fast


class RecordingLogger:
    def __init__(self):
        self.calls: list[tuple[dict, int | None]] = []
        self.tags: list[dict] = []

    def log_metrics(self, metrics, step=None):
        self.calls.append((metrics, step))

    def set_tags(self, tags):
        self.tags.append(tags)


def test_tokens_per_second_from_token_deltas():
    logger = RecordingLogger()
    cb = MLflowMetrics(logger)
    cb.on_train_begin(None, SimpleNamespace(global_step=0), None)
    time.sleep(0.05)
    cb.on_log(None, SimpleNamespace(global_step=1), None, logs={"loss": 2.0, "num_tokens": 500, "note": "x"})
    (metrics, step), = logger.calls
    assert step == 1 and metrics["train/loss"] == 2.0 and "train/note" not in metrics
    assert 0 < metrics["train/tokens_per_second"] < 500 / 0.05
    assert metrics["train/peak_memory_mb"] == pytest.approx(peak_memory_mb(), rel=0.1) and metrics["train/peak_memory_mb"] > 10


def test_no_rate_on_the_first_log_after_a_resume():
    logger = RecordingLogger()
    cb = MLflowMetrics(logger)
    cb.on_train_begin(None, SimpleNamespace(global_step=40), None)  # counts before the checkpoint are unknown here
    cb.on_log(None, SimpleNamespace(global_step=41), None, logs={"num_tokens": 900})
    cb.on_log(None, SimpleNamespace(global_step=42), None, logs={"num_tokens": 1000})
    assert "train/tokens_per_second" not in logger.calls[0][0]
    assert logger.calls[1][0]["train/tokens_per_second"] > 0


@pytest.mark.parametrize("packing", [False, True])
def test_every_logging_step_logs_throughput_of_non_padding_tokens(tmp_path, tiny_model_dir, chat_path, packing):
    logger = RecordingLogger()
    cfg = fast("ia3", max_steps=50, epochs=1, logging_steps=1, max_length=128, packing=packing)
    trainer = build_trainer(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path, logger=logger)
    dataset_tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    trainer.train()
    steps = [(m, s) for m, s in logger.calls if "train/loss" in m]
    assert [s for _, s in steps] == list(range(1, len(steps) + 1))
    assert all(m["train/peak_memory_mb"] > 0 for m, _ in steps)
    assert all(m["train/tokens_per_second"] > 0 for m, _ in steps)
    assert steps[-1][0]["train/num_tokens"] == dataset_tokens  # one epoch: every real token once, no padding


def test_adalora_budget_runs_after_each_optimizer_step():
    seen = []
    model = SimpleNamespace(base_model=SimpleNamespace(update_and_allocate=seen.append))
    cb = AdaLoRABudget()
    for step in range(3):
        cb.on_optimizer_step(None, SimpleNamespace(global_step=step), None, model=model)
    assert seen == [0, 1, 2]


def test_preference_monitor_logs_drift_and_warns_once_when_chosen_logps_keep_falling():
    from tasks.training.callbacks import PreferenceMonitor

    logger = RecordingLogger()
    monitor = PreferenceMonitor(logger, patience=3)
    args = SimpleNamespace(beta=0.5)
    for step, chosen in enumerate([-10.0, -11.0, -12.0, -13.0, -14.0, -15.0], start=1):
        monitor.on_log(args, SimpleNamespace(global_step=step), None,
                       logs={"logps/chosen": chosen, "rewards/chosen": 0.2, "rewards/rejected": -0.1})
    assert logger.calls[0] == ({"train/logratio_to_reference": pytest.approx(0.1)}, 1)  # (0.2 - 0.1) / (2 * 0.5)
    warnings = [tags for tags in logger.tags if "warning.chosen_logps_falling" in tags]
    assert len(warnings) == 1 and "-10.00 -> -13.00 by step 4" in warnings[0]["warning.chosen_logps_falling"]
