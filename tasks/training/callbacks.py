"""Trainer callbacks: per-step metrics to the pipeline's MLflow run, AdaLoRA's rank-budget schedule, and a watch on
the chosen log-prob of preference training."""
from __future__ import annotations

import logging
import resource
import time

import torch
from transformers import TrainerCallback


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class MLflowMetrics(TrainerCallback):
    """Logs loss, learning rate, grad norm, non-padding tokens/s and peak memory at every logging step, the
    validation loss (`train/eval_loss`, and the trainer's other `eval_*` numbers) at every evaluation, and keeps the
    run's system metrics (CPU, memory, disk, network: `system/*`) sampled from the start of training to its end.

    Written by hand rather than using transformers' MLflowCallback because that one opens its own run
    through the fluent API and logs every TrainingArguments field; here the run is the pipeline's.
    """

    def __init__(self, logger, prefix: str = "train/", system_metrics: bool = True):
        self.logger, self.prefix = logger, prefix
        self._last: tuple[float, float] | None = None  # (time, tokens) at the previous log
        self._system = system_metrics and hasattr(logger, "start_system_metrics")
        self._sampling = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (time.perf_counter(), 0 if state.global_step == 0 else None)
        if self._system and not self._sampling:
            self.logger.start_system_metrics()
            self._sampling = True

    def on_train_end(self, args, state, control, **kwargs):
        # not reached when training raises: the monitor then ends with the run (see RunLogger.start_system_metrics)
        if self._sampling:
            self._sampling = False
            self.logger.stop_system_metrics()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        if any(k.startswith("eval_") for k in logs):  # an evaluation: no throughput, and the token clock goes on
            metrics = {k: v for k, v in logs.items() if k.startswith("eval_") and isinstance(v, (int, float))}
            if self.logger is not None:
                self.logger.log_metrics({self.prefix + k: v for k, v in metrics.items()}, step=state.global_step)
            return
        metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        now = time.perf_counter()
        tokens = logs.get("num_tokens")
        if tokens is not None and self._last and self._last[1] is not None and now > self._last[0]:
            metrics["tokens_per_second"] = (tokens - self._last[1]) / (now - self._last[0])
        self._last = (now, tokens)
        metrics["peak_memory_mb"] = peak_memory_mb()
        if self.logger is not None:
            self.logger.log_metrics({self.prefix + k: v for k, v in metrics.items()}, step=state.global_step)


class AdaLoRABudget(TrainerCallback):
    """Calls AdaLoRA's `update_and_allocate` after every optimizer step, while the gradients still exist.

    The rank allocator scores each singular value by |w · grad|, so it must run between `optimizer.step()` and
    `zero_grad()`: `on_optimizer_step` is exactly there. `global_step` is not yet incremented, matching PEFT's loop.
    """

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)


class PreferenceMonitor(TrainerCallback):
    """For recipes with a reference model: logs the policy's drift from it, and warns (log line + run tag) when the
    chosen replies' log-prob keeps falling, the known failure where chosen and rejected likelihoods both drop and only
    their gap grows (`train.dpo.rpo_alpha` is the remedy).

    `logratio_to_reference` = mean over the batch's replies of log π(y|x) - log π_ref(y|x) = (rewards/chosen +
    rewards/rejected) / (2β). It is what KL(π || π_ref) averages, but over the data's replies rather than samples
    from π, so it is no KL: it goes negative when the policy moves probability away from the data's replies.
    """

    def __init__(self, logger=None, patience: int = 5):
        self.logger, self.patience = logger, patience
        self.seen: list[float] = []
        self.warned = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.logger is not None and {"rewards/chosen", "rewards/rejected"} <= set(logs) and getattr(args, "beta", 0):
            ratio = (logs["rewards/chosen"] + logs["rewards/rejected"]) / (2 * args.beta)
            self.logger.log_metrics({"train/logratio_to_reference": ratio}, step=state.global_step)
        value = logs.get("logps/chosen")
        if value is None or self.warned:
            return
        self.seen.append(float(value))
        recent = self.seen[-(self.patience + 1):]
        if len(recent) > self.patience and all(b < a for a, b in zip(recent, recent[1:])):
            self.warned = True
            message = (f"logps/chosen fell at {self.patience} logging steps in a row ({recent[0]:.2f} -> "
                       f"{recent[-1]:.2f} by step {state.global_step}): chosen replies are getting less likely; "
                       "consider train.dpo.rpo_alpha")
            logging.getLogger("tuneforge").warning(message)
            if self.logger is not None:
                self.logger.set_tags({"warning.chosen_logps_falling": message})


class KLDivergenceCallback(TrainerCallback):
    """The design documents' KL monitor for PPO, GRPO and RLOO: reads the logged `kl` (the policy's mean per-token
    KL to the reference) and, when it passes `threshold`, warns once (a log line and a run tag) and, with
    `stop=True`, ends training there. KL blow-up and reward hacking are what online RL runs die of."""

    def __init__(self, threshold: float = 0.1, stop: bool = False, logger=None):
        self.threshold, self.stop, self.logger = threshold, stop, logger
        self.tripped_at: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        kl = (logs or {}).get("kl")
        if kl is None or kl <= self.threshold:
            return
        if self.tripped_at is None:
            self.tripped_at = state.global_step
            message = (f"KL to the reference {kl:.3f} passed the threshold {self.threshold} at step {state.global_step}"
                       + (": stopping" if self.stop else ""))
            logging.getLogger("tuneforge").warning(message)
            if self.logger is not None:
                self.logger.set_tags({"warning.kl_threshold": message})
        if self.stop:
            control.should_training_stop = True


class RewardKLPlot(TrainerCallback):
    """Collects the logged (kl, reward) of each step and draws reward against KL at the end of training: the
    curve that shows whether reward was bought with drift (a reward that climbs only as KL explodes is hacking)."""

    def __init__(self, out_path, logger=None):
        self.out_path, self.logger = out_path, logger
        self.points: list[tuple[int, float, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "kl" in logs and "reward" in logs:
            self.points.append((state.global_step, float(logs["kl"]), float(logs["reward"])))

    def on_train_end(self, args, state, control, **kwargs):
        if not self.points:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps, kls, rewards = zip(*self.points)
        fig, ax = plt.subplots(figsize=(6, 4))
        dots = ax.scatter(kls, rewards, c=steps, cmap="viridis", s=18)
        ax.plot(kls, rewards, color="grey", linewidth=0.5, alpha=0.6)
        fig.colorbar(dots, ax=ax, label="step")
        ax.set_xlabel("KL to the reference (nats/token)")
        ax.set_ylabel("mean reward")
        ax.set_title("reward vs KL")
        fig.tight_layout()
        fig.savefig(self.out_path, dpi=110)
        plt.close(fig)
        if self.logger is not None:
            self.logger.log_artifacts(self.out_path, "train")
