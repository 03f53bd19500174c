"""What a run shows on the terminal: stage banners, one progress bar per long step, warnings, the final summary.

Left out: the libraries' own progress bars and chatter (datasets' "Generating split" and map() bars, lm-eval's
one-item bars per benchmark subject, transformers' weight-loading bar, MLflow's artifact bars, deprecation
warnings) and Prefect's INFO lines. The project's INFO lines still reach the Prefect API (the flow run's Logs tab):
Prefect's run loggers log at INFO while its console handler passes warnings only.

Kept: the bars of the long steps: the trainer's steps (without the dict it prints under the bar at every log, and
without a second bar per evaluation: MLflow has those numbers), perplexity, and lm-eval's requests.
"""
from __future__ import annotations

import logging
import os
import warnings

# Read by the libraries when they are imported: set before the flow (and so torch, datasets, ...) is imported.
QUIET_ENV = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # "Generating train split", map()/filter() bars
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers reads it too: "Loading weights"
    "TRANSFORMERS_VERBOSITY": "warning",  # above WARNING, TrainingArguments turns the trainer's step bar off
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "LMEVAL_LOG_LEVEL": "ERROR",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

# Prefect reads these at import. Keys of prefect/logging/logging.yml can be set as PREFECT_LOGGING_<PATH>_<KEY>.
PREFECT_LOG_ENV = {
    "PREFECT_LOGGING_LEVEL": "WARNING",  # Prefect's own loggers (client, engine internals)
    "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",  # get_run_logger(): to the API handler, so the
    "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "INFO",  # Logs tab has the run's story ...
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",  # ... while the terminal shows warnings only
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tuneforge",  # logging.getLogger("tuneforge") goes to the API as well
}

_NOISY_LOGGERS = ("bitsandbytes", "lm_eval", "datasets", "huggingface_hub", "great_expectations", "alembic",
                  "mlflow.store.db.utils", "mlflow.system_metrics")


def prefect_logging(verbose: bool = False) -> None:
    """Route Prefect's run logs to its API at INFO and to the console at WARNING (INFO with `verbose`).
    Explicit settings in the environment win."""
    for key, value in PREFECT_LOG_ENV.items():
        os.environ.setdefault(key, value)
    if verbose:
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO"
    else:  # "Still processing items: 1 items remaining..." while events and logs drain at exit
        for name in ("EventsWorker", "APILogWorker"):
            logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("tuneforge").setLevel(logging.INFO)


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars, split-generation lines, advisory logs and deprecation warnings.
    Call before importing the flow: the environment variables are read on import."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    # MLflow asks to disambiguate a local path that several dataset sources could read; the project logs files.
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
    quiet_lm_eval()
    quiet_trainer()


def quiet_trainer() -> None:
    """The trainer's step bar only: transformers' ProgressCallback also writes every logged dict under it and opens
    a bar per evaluation. Every trainer built after this call gets the quiet one."""
    import transformers.trainer
    from transformers.trainer_callback import ProgressCallback

    class StepBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            pass

    transformers.trainer.DEFAULT_PROGRESS_CALLBACK = StepBar


def quiet_lm_eval() -> None:
    """lm-eval draws a bar per task while building requests (one per MMLU subject, most of one item) and one while
    tokenizing; it has no switch for them. Its request bar, the long one, stays."""
    try:
        import lm_eval.api.model
        import lm_eval.api.task
    except ImportError:
        return
    lm_eval.api.task.tqdm = lm_eval.api.model.tqdm = _silent_tqdm


def _silent_tqdm(*args, **kwargs):
    from tqdm import tqdm

    return tqdm(*args, **{**kwargs, "disable": True})  # also over a caller's `disable=False`


class _HideRunFailures(logging.Filter):
    """Drop Prefect's ERROR records of a failed flow or task run (a traceback each) from the console: the command
    reports the error itself, once, and the records stay in the Prefect UI."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.name.startswith(("prefect.flow_runs",
                                                                                 "prefect.task_runs")))


def hide_run_failures() -> None:
    """Install `_HideRunFailures` on Prefect's console handler. Call after Prefect is imported."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(_HideRunFailures())
