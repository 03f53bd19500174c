"""Python API in the design documents' style (SFTTrainer, DPOTrainer, KTOTrainer, ORPOTrainer, SimPOTrainer,
RewardModelTrainer, PPOTrainer, RLHFTrainer, GRPOTrainer, RLOOTrainer), thin over the same recipe functions the
flows run:

    from tasks.training.api import DPOTrainer
    from tasks.training.config import DPOConfig

    result = DPOTrainer(model="embedded:smollm2-135m-instruct", config=DPOConfig(beta=0.1, loss_type="sigmoid"),
                        out_dir="runs/api/dpo").train(pairs)     # pairs: [{"prompt", "chosen", "rejected"}] or a file
    result.adapter_dir, result.final_loss

`model` is an HF id, a local folder, the embedded id or a `ModelRef`; `train` (a TrainConfig) sets the method and
the optimisation knobs, `config` the recipe's own section. Rows in any format the data stage reads are normalised
the same way (formats.py); governance (PII, dedup, licenses) is the flow's job, not this API's.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import Field

from tasks.data.formats import KIND, detect, normalise
from tasks.model import ModelRef
from tasks.schema import Section
from tasks.training.common import TrainResult
from tasks.training.config import (DPOConfig, GroupRLConfig, KTOConfig, ORPOConfig, PPOConfig, RLConfig, SimPOConfig,
                                   TrainConfig)
from tasks.training.recipes import check_data, trainer_for
from tasks.training.rl import Reward


class RecipeTrainer:
    recipe = "sft"
    section: str | None = None  # the TrainConfig field that `config` fills

    def __init__(self, model: str | ModelRef, config=None, train: TrainConfig | None = None,
                 out_dir: str | Path | None = None, seed: int = 0, **recipe_kwargs):
        self.model = model if isinstance(model, ModelRef) else ModelRef.of(str(model))
        update = {"recipe": self.recipe, **({self.section: config} if self.section and config is not None else {})}
        self.cfg = TrainConfig.model_validate({**(train or TrainConfig()).model_dump(), **update})
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix=f"tuneforge-{self.recipe}-"))
        self.seed, self.recipe_kwargs = seed, recipe_kwargs

    def train(self, data: list[dict] | str | Path) -> TrainResult:
        """Train on rows (any supported format) or a JSONL file of them; returns what the flow's train stage does."""
        rows = data if isinstance(data, list) else [json.loads(line) for line in Path(data).read_text().splitlines()
                                                     if line.strip()]
        for kind in {KIND[detect(r)] for r in rows}:  # before any model loads, as in the flow
            check_data(self.recipe, kind)
        prepared = [normalise(r, detect(r), f"api-{i}", "api") for i, r in enumerate(rows)]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "train.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prepared))
        return trainer_for(self.recipe)(self.cfg, self.model, self.model.path, path, self.out_dir / "train",
                                        seed=self.seed, **self.recipe_kwargs)


class SFTTrainer(RecipeTrainer):
    recipe = "sft"


class DPOTrainer(RecipeTrainer):
    """`ref_model`: None = the base with the adapter disabled (or a frozen copy for full-weight methods)."""

    recipe, section = "dpo", "dpo"

    def __init__(self, model, ref_model=None, config: DPOConfig | None = None, **kwargs):
        super().__init__(model, config, ref_model=ref_model, **kwargs)


class KTOTrainer(RecipeTrainer):
    recipe, section = "kto", "kto"

    def __init__(self, model, config: KTOConfig | None = None, **kwargs):
        super().__init__(model, config, **kwargs)


class ORPOTrainer(RecipeTrainer):
    recipe, section = "orpo", "orpo"

    def __init__(self, model, config: ORPOConfig | None = None, **kwargs):
        super().__init__(model, config, **kwargs)


class SimPOTrainer(RecipeTrainer):
    recipe, section = "simpo", "simpo"

    def __init__(self, model, config: SimPOConfig | None = None, **kwargs):
        super().__init__(model, config, **kwargs)


class RewardModelTrainer(RecipeTrainer):
    """Trains a score head (and adapter); `.train(pairs).model_dir` loads with evals.winrate.RewardJudge."""

    recipe = "reward"

    def __init__(self, model, **kwargs):
        super().__init__(model, None, **kwargs)


class OnlineRLTrainer(RecipeTrainer):
    """PPO, GRPO and RLOO: `reward_model` is a reward model folder, package or MLflow model URI, or a Python
    function f(prompts, completions) -> list[float]; `rl` sets the sampling and the KL monitor. `train(prompts)`
    takes strings, chat turns, or rows in any supported format (their prompts are used)."""

    def __init__(self, model, reward_model, config=None, rl: RLConfig | dict | None = None, **kwargs):
        rl = rl.model_dump() if isinstance(rl, RLConfig) else dict(rl or {})
        if callable(reward_model):
            rl["reward_function"] = f"{reward_model.__module__}:{getattr(reward_model, '__qualname__', 'reward')}"
            kwargs["reward"] = Reward.from_function(reward_model)
        else:
            rl["reward_model"] = str(reward_model)
        train = kwargs.pop("train", None) or TrainConfig()
        train = train.model_copy(update={"rl": RLConfig.model_validate(rl)})
        super().__init__(model, config, train=train, **kwargs)

    def train(self, prompts: list[str] | list[list[dict]] | list[dict] | str | Path) -> TrainResult:
        rows = prompts if isinstance(prompts, list) else [json.loads(line) for line in Path(prompts).read_text()
                                                          .splitlines() if line.strip()]
        turns = [_prompt_turns(r, i) for i, r in enumerate(rows)]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "prompts.jsonl"
        path.write_text("".join(json.dumps({"messages": t}, ensure_ascii=False) + "\n" for t in turns))
        return trainer_for(self.recipe)(self.cfg, self.model, self.model.path, path, self.out_dir / "train",
                                        seed=self.seed, **self.recipe_kwargs)


def _prompt_turns(row, i: int) -> list[dict]:
    """A prompt as chat turns ending with a user turn: a string, turns, or a row of any supported format."""
    if isinstance(row, str):
        return [{"role": "user", "content": row}]
    if isinstance(row, list):
        turns = row
    elif isinstance(row, dict) and set(row) == {"prompt"}:
        turns = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
    else:
        turns = normalise(row, detect(row), f"api-{i}", "api")["messages"]
        turns = turns[:-1] if turns and turns[-1]["role"] == "assistant" else turns
    if not turns or turns[-1].get("role") != "user" or not all(isinstance(t.get("content"), str) for t in turns):
        raise ValueError(f"prompt {i}: expected a string, or chat turns ending with a user turn")
    return turns


class PPOTrainer(OnlineRLTrainer):
    """`PPOTrainer(model=..., reward_model=..., config=PPOConfig(clip_range=0.2, ...)).train(prompts)`."""

    recipe, section = "ppo", "ppo"

    def __init__(self, model, reward_model, config: PPOConfig | None = None, **kwargs):
        super().__init__(model, reward_model, config, **kwargs)


class RLHFConfig(Section):
    """The design documents' RLHFConfig: RLHF's PPO stage in three knobs (value_loss_coef is PPO's vf_coef), the
    rest at PPOConfig's defaults."""

    reward_model_path: str | None = None
    kl_coef: float = Field(0.1, ge=0)
    clip_range: float = Field(0.2, gt=0)
    value_loss_coef: float = Field(0.5, ge=0)

    def ppo(self) -> PPOConfig:
        return PPOConfig(kl_coef=self.kl_coef, clip_range=self.clip_range, vf_coef=self.value_loss_coef)


class RLHFTrainer(PPOTrainer):
    """`RLHFTrainer(policy_model=..., reward_model=..., config=RLHFConfig(kl_coef=0.1)).train(prompts)`: PPO."""

    def __init__(self, policy_model, reward_model=None, config: RLHFConfig | None = None, **kwargs):
        config = config or RLHFConfig()
        reward_model = reward_model if reward_model is not None else config.reward_model_path
        if reward_model is None:
            raise ValueError("RLHFTrainer needs reward_model or RLHFConfig(reward_model_path=...)")
        super().__init__(policy_model, reward_model, config.ppo(), **kwargs)


class GRPOTrainer(OnlineRLTrainer):
    recipe, section = "grpo", "grpo"

    def __init__(self, model, reward_model, config: GroupRLConfig | None = None, **kwargs):
        super().__init__(model, reward_model, config, **kwargs)


class RLOOTrainer(OnlineRLTrainer):
    recipe, section = "rloo", "rloo"

    def __init__(self, model, reward_model, config: GroupRLConfig | None = None, **kwargs):
        super().__init__(model, reward_model, config, **kwargs)
