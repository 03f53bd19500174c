"""Shared by the training tests: a small repeated chat data set and a fast-training config factory."""
import json
from pathlib import Path

from tasks.training.config import TrainConfig

_PAIRS = [
    ("How do I start a backup?", "Run `stratovault backup start --profile nightly`."),
    ("Where are the logs?", "Logs are in /var/log/stratovault; use `stratovault logs --tail 50` to read them."),
    ("How do I restore one file?", "Use `stratovault restore --snapshot latest --path /etc/hosts`."),
    ("What does error SVX-104 mean?", "SVX-104 means the repository is locked. Run `stratovault unlock`, then retry."),
    ("Can I back up to S3?", "Yes: set `target: s3://bucket/prefix` and export the AWS keys before the run."),
    ("How often should I prune?", "Weekly is enough: `stratovault prune --keep-daily 7 --keep-weekly 4`."),
]


def write_chats(path: Path, repeats: int = 4) -> Path:
    """len(_PAIRS) x repeats rows of `messages`; every other row opens with a system turn (varied lengths)."""
    with open(path, "w") as f:
        for r in range(repeats):
            for i, (q, a) in enumerate(_PAIRS):
                messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                if (i + r) % 2:
                    messages.insert(0, {"role": "system", "content": "You are the Stratovault support assistant."})
                f.write(json.dumps({"messages": messages}) + "\n")
    return path


def fast(method: str, **overrides) -> TrainConfig:
    """A few high-learning-rate steps on the tiny model: enough for the loss to fall, seconds on CPU."""
    base = dict(method=method, max_steps=8, learning_rate=1e-2, warmup_fraction=0.0, lr_scheduler="constant_with_warmup",
                batch_size=4, max_length=64, logging_steps=1, save_steps=100, epochs=10)
    return TrainConfig.model_validate({**base, **overrides})


def backtick_reward(prompts, completions) -> list[float]:
    """A rule-based reward the tiny SFT model can learn fast: up to 4 backticks in the reply (the chats quote
    commands in backticks, so the SFT model already emits some)."""
    return [min(c.count("`"), 4) / 4 for c in completions]


def rl_config(recipe: str, max_steps: int = 30, kl_threshold: float = 2.0, rl_stop: bool = False,
              **overrides) -> TrainConfig:
    """Online RL on the tiny SFT model: full weights at 1e-3, 8 samples per step, 16-token replies."""
    group = {"num_generations": 4}
    return fast("full", recipe=recipe, max_steps=max_steps, learning_rate=1e-3, batch_size=8, epochs=100,
                rl={"reward_function": "tests.unit.training.support:backtick_reward", "max_new_tokens": 16,
                    "kl_threshold": kl_threshold, "stop_on_kl": rl_stop},
                **({recipe: group} if recipe in ("grpo", "rloo") else {}), **overrides)
