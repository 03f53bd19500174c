"""The recipes (training objectives) and the data each one trains on, checked before any model loads.

One recipe is one module under tasks/training/ with a `train_<name>` function of the same signature:
`(cfg, model: ModelRef, tokenizer_dir, train_path, out_dir, *, logger, seed) -> TrainResult`. It is imported
only when it runs, so checking a config or the data never pulls in a trainer.
"""
from __future__ import annotations

import importlib
from typing import Callable

# data kind (tasks.data: PreparedData.kind) -> what a user calls it
DATA_KINDS = {"sft": "chat rows", "preference": "preference pairs", "kto": "labelled completions",
              "text": "plain text", "prompt": "prompts",
              "classification": "labelled texts"}

# recipe -> (the data kinds it trains on, "module:function")
RECIPES: dict[str, tuple[frozenset[str], str]] = {
    "sft": (frozenset({"sft"}), "tasks.training.sft:train_sft"),
    "dpo": (frozenset({"preference"}), "tasks.training.dpo:train_dpo"),
    "kto": (frozenset({"kto", "preference"}), "tasks.training.kto:train_kto"),
    "orpo": (frozenset({"preference"}), "tasks.training.orpo:train_orpo"),
    "simpo": (frozenset({"preference"}), "tasks.training.simpo:train_simpo"),
    "reward": (frozenset({"preference"}), "tasks.training.reward:train_reward"),
    # online RL samples its own replies: the prompts of chat rows or preference pairs (their replies are unused)
    "ppo": (frozenset({"sft", "preference"}), "tasks.training.ppo:train_ppo"),
    "grpo": (frozenset({"sft", "preference"}), "tasks.training.grpo:train_grpo"),
    "rloo": (frozenset({"sft", "preference"}), "tasks.training.rloo:train_rloo"),
    "distill": (frozenset({"sft"}), "tasks.training.distill:train_distill"),
    "classify": (frozenset({"classification"}), "tasks.training.classify:train_classify"),
    "fewshot": (frozenset({"classification"}), "tasks.training.fewshot:train_fewshot"),
}


class RecipeDataMismatch(ValueError):
    pass


def check_data(recipe: str, kind: str) -> None:
    """Raise, naming both, when `recipe` cannot train on data of `kind`."""
    kinds, _ = RECIPES[recipe]
    if kind not in kinds:
        wanted = " or ".join(DATA_KINDS[k] for k in sorted(kinds))
        raise RecipeDataMismatch(f"train.recipe={recipe} trains on {wanted}, but the prepared data is "
                                 f"{DATA_KINDS.get(kind, kind)} (kind {kind!r}); choose a recipe for that data "
                                 f"or point data.sources at {wanted}")


def trainer_for(recipe: str) -> Callable:
    """The recipe's `train_<name>` function."""
    module, name = RECIPES[recipe][1].split(":")
    return getattr(importlib.import_module(module), name)
