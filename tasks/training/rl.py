"""What the online RL recipes (ppo, grpo, rloo) share: the prompts they sample from and the reward that scores a
sampled reply.

Prompts come from prepared chat rows (the conversation before its last assistant turn) or preference pairs (the
prompt turns); the replies in the data are not used. The reward is a reward model (`evals.winrate.RewardJudge`,
the same judge the evaluation's win rate uses) or a Python function, behind one callable in TRL's reward-function
shape, so PPO, GRPO and RLOO score replies identically.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Callable

from datasets import Dataset

from tasks.training.config import RLConfig


def load_prompts(path: Path) -> list[list[dict]]:
    """Each row's prompt turns (ending with a user turn), in file order, each distinct prompt once: a preference
    pair's prompt, a conversation without its last reply, or a prompt row as it is."""
    prompts, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            turns = json.loads(line)["messages"]
            if turns and turns[-1]["role"] == "assistant":  # a conversation: prompt it for the last reply
                turns = turns[:-1]
            key = json.dumps(turns, sort_keys=True)
            if turns and turns[-1]["role"] == "user" and key not in seen:
                seen.add(key)
                prompts.append(turns)
    if not prompts:
        raise ValueError(f"{path}: no prompts (rows ending with a user turn, or conversations with an assistant reply)")
    return prompts


def prompt_dataset(path: Path) -> Dataset:
    """Conversational prompts as TRL's online trainers read them."""
    return Dataset.from_list([{"prompt": p} for p in load_prompts(path)])


def _text(completion) -> str:
    """A completion as plain text: TRL passes conversational ones as [{"role": "assistant", "content": ...}]."""
    return completion[-1]["content"] if isinstance(completion, list) else completion


class Reward:
    """reward(prompts, completions, **kwargs) -> list[float]: TRL's reward-function shape, over a reward model or a
    Python function. `prompts` are chat turns (or strings), `completions` strings or conversational replies."""

    def __init__(self, score: Callable[[list, list[str]], list[float]], name: str):
        self._score, self.__name__ = score, name

    @classmethod
    def from_config(cls, cfg: RLConfig, out_dir: Path, tracking_uri: str | None = None) -> "Reward":
        if cfg.reward_function is not None:
            return cls.from_function(cfg.reward_function)
        from evals.winrate import RewardJudge
        from tasks.init_from import model_folder

        judge = RewardJudge(model_folder(cfg.reward_model, Path(out_dir) / "reward_model", tracking_uri))
        return cls(lambda prompts, replies: judge.score(prompts, replies).tolist(), "reward_model")

    @classmethod
    def from_function(cls, ref: str | Callable) -> "Reward":
        """`module:function` (or the function itself)."""
        if callable(ref):
            return cls(ref, getattr(ref, "__name__", "reward_function"))
        module, _, name = ref.partition(":")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"train.rl.reward_function={ref}: cannot import it ({err})") from err
        return cls(fn, name)

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        scores = [float(s) for s in self._score(list(prompts), [_text(c) for c in completions])]
        if len(scores) != len(completions):
            raise ValueError(f"reward {self.__name__} returned {len(scores)} scores for {len(completions)} replies")
        return scores


def rl_callbacks(cfg: RLConfig, out_dir: Path, logger=None) -> list:
    """The KL monitor (when train.rl.kl_threshold is set) and the reward-vs-KL plot, for every online recipe."""
    from tasks.training.callbacks import KLDivergenceCallback, RewardKLPlot

    monitor = [KLDivergenceCallback(cfg.kl_threshold, cfg.stop_on_kl, logger)] if cfg.kl_threshold else []
    return [*monitor, RewardKLPlot(Path(out_dir) / "reward_vs_kl.png", logger)]


def train_group(trainer_cls, args_cls, cfg, model, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                logger=None, seed: int = 0, callbacks: list | None = None, reward: Reward | None = None):
    """GRPO or RLOO through TRL's trainer: `model.generate` rollouts (no vLLM), our precision and optimizer, the
    reward behind `Reward`, the KL monitor and plot. One step = train.batch_size completions, num_generations per
    prompt; `cfg.grpo` or `cfg.rloo` (same fields) holds the group settings."""
    from tasks.training.common import load_for_training, make_trainer, run_trainer, training_args

    group, rl = getattr(cfg, cfg.recipe), cfg.rl
    reward = reward or Reward.from_config(rl, out_dir, getattr(logger, "uri", None))
    policy, tokenizer = load_for_training(cfg, model, tokenizer_dir, seed)
    args = training_args(cfg, Path(out_dir), seed, args_cls, num_generations=group.num_generations, beta=group.beta,
                         epsilon=group.epsilon, num_iterations=group.num_iterations, temperature=rl.temperature,
                         top_k=0, top_p=1.0, max_completion_length=rl.max_new_tokens, disable_dropout=True,
                         generation_kwargs={"min_new_tokens": rl.min_new_tokens} if rl.min_new_tokens else None)
    trainer = make_trainer(trainer_cls, cfg, policy, tokenizer, args, prompt_dataset(train_path), logger,
                           [*rl_callbacks(rl, out_dir, logger), *(callbacks or [])], reward_funcs=reward)
    return run_trainer(trainer, cfg, out_dir, logger)
