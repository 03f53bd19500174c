"""Python API in the design documents' style (SFTTrainer, DPOTrainer, KTOTrainer, ORPOTrainer, SimPOTrainer,
RewardModelTrainer, PPOTrainer, RLHFTrainer, GRPOTrainer, RLOOTrainer, DistillationTrainer, TransferTrainer,
FewShotTrainer; EWC / Replay / LwF for any of them), thin over the same recipe functions the flows run:

    from tasks.training.api import DPOTrainer
    from tasks.training.config import DPOConfig

    result = DPOTrainer(model="embedded:smollm2-135m-instruct", config=DPOConfig(beta=0.1, loss_type="sigmoid"),
                        out_dir="runs/api/dpo").train(pairs)     # pairs: [{"prompt", "chosen", "rejected"}] or a file
    result.adapter_dir, result.final_loss

`model` is an HF id, a local folder, the embedded id or a `ModelRef`; `train` (a TrainConfig) sets the method and
the optimisation knobs, `config` the recipe's own section, `continual` a continual-learning strategy
(`SFTTrainer(model, continual=EWC("runs/.../data/train.jsonl"))`). Rows in any format the data stage reads are normalised
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
from tasks.training.config import (ContinualConfig, DistillationConfig, DPOConfig, FewShotConfig, GroupRLConfig,
                                   KTOConfig, ORPOConfig, PPOConfig, RLConfig, SimPOConfig, TrainConfig, TransferConfig)
from tasks.training.launch import train_recipe
from tasks.training.recipes import check_data, trainer_for
from tasks.training.rl import Reward


class RecipeTrainer:
    recipe = "sft"
    section: str | None = None  # the TrainConfig field that `config` fills

    default_train: dict = {}  # TrainConfig fields this recipe needs when `train` is not given

    def __init__(self, model: str | ModelRef, config=None, train: TrainConfig | None = None,
                 out_dir: str | Path | None = None, seed: int = 0, continual: ContinualConfig | None = None,
                 **recipe_kwargs):
        self.model = model if isinstance(model, ModelRef) else ModelRef.of(str(model))
        update = {"recipe": self.recipe, **({self.section: config} if self.section and config is not None else {}),
                  **({"continual": continual} if continual is not None else {})}
        train = (train or TrainConfig(**self.default_train)).model_dump()
        self.cfg = TrainConfig.model_validate({**train, **update})
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix=f"tuneforge-{self.recipe}-"))
        self.seed, self.recipe_kwargs = seed, recipe_kwargs

    def train(self, data: list[dict] | str | Path) -> TrainResult:
        """Train on rows (any supported format) or a JSONL file of them; returns what the flow's train stage does."""
        path = self._write(_rows(data), "train.jsonl")
        return train_recipe(self.cfg, self.model, self.model.path, path, self.out_dir / "train", seed=self.seed,
                            **self.recipe_kwargs)

    def _write(self, rows: list[dict], name: str) -> Path:
        """Rows checked against the recipe (before any model loads, as in the flow) and normalised into a file."""
        for kind in {KIND[detect(r)] for r in rows}:
            check_data(self.recipe, kind)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / name
        path.write_text("".join(json.dumps(normalise(r, detect(r), f"api-{i}", "api"), ensure_ascii=False) + "\n"
                                for i, r in enumerate(rows)))
        return path


def _rows(data: list[dict] | str | Path) -> list[dict]:
    return data if isinstance(data, list) else [json.loads(line) for line in Path(data).read_text().splitlines()
                                                if line.strip()]


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
        turns = [_prompt_turns(r, i) for i, r in enumerate(_rows(prompts))]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "prompts.jsonl"
        path.write_text("".join(json.dumps({"messages": t}, ensure_ascii=False) + "\n" for t in turns))
        return train_recipe(self.cfg, self.model, self.model.path, path, self.out_dir / "train", seed=self.seed,
                            **self.recipe_kwargs)


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


class DistillationTrainer(RecipeTrainer):
    """`DistillationTrainer(student=..., teacher=..., config=DistillationConfig(temperature=4.0, alpha=0.5,
    loss_type="kl_div")).train(chats)`. `student`: "every_other_layer" (built from the teacher) or a model reference
    with the teacher's vocabulary; it trains whole (`train.method` full or partial)."""

    recipe, section = "distill", "distill"
    default_train = {"method": "full"}

    def __init__(self, teacher, student: str = "every_other_layer", config: DistillationConfig | None = None,
                 **kwargs):
        config = (config or DistillationConfig()).model_copy(update={"student": str(student)})
        super().__init__(teacher, config, **kwargs)


class TransferTrainer(RecipeTrainer):
    """`TransferTrainer(model, TransferConfig(freeze_encoder=True, new_head=True)).train(rows)`: rows of
    {"text", "label"}; `result.model_dir` is a sequence-classification folder with the labels in its config."""

    recipe, section = "classify", "transfer"
    default_train = {"method": "full"}

    def __init__(self, model, config: TransferConfig | None = None, **kwargs):
        super().__init__(model, config, **kwargs)


class FewShotResult(TrainResult):
    evaluation: dict[str, float] = {}
    """N-way K-shot accuracy on the query set's classes, tuned vs the untrained backbone, with intervals."""


class FewShotTrainer(RecipeTrainer):
    """`FewShotTrainer(model, FewShotConfig(n_ways=5, n_shots=5, n_queries=15)).train(support_set, query_set)`:
    meta-trains on the support set's classes; the query set holds other classes, on which N-way K-shot episodes
    measure the tuned backbone against the untrained one. Both are rows of {"text", "label"}."""

    recipe, section = "fewshot", "fewshot"

    def __init__(self, model, config: FewShotConfig | None = None, **kwargs):
        super().__init__(model, config, **kwargs)

    def train(self, support_set: list[dict] | str | Path, query_set: list[dict] | str | Path) -> FewShotResult:
        from evals.classification import load_labelled
        from tasks.training.fewshot import fewshot_evaluation
        from tasks.training.loading import load_trained

        support, query = _rows(support_set), _rows(query_set)
        novel = sorted({str(r["label"]) for r in query})
        if overlap := novel and sorted(set(novel) & {str(r["label"]) for r in support}):
            raise ValueError(f"the query set's classes must be new to the support set; both have {overlap}")
        cfg = self.cfg.model_copy(update={"fewshot": self.cfg.fewshot.model_copy(update={"held_out": novel})})
        path = self._write(support + query, "train.jsonl")
        result = trainer_for(self.recipe)(cfg, self.model, self.model.path, path, self.out_dir / "train",
                                          seed=self.seed)
        tuned, tokenizer = load_trained(self.model, self.model.path, result.adapter_dir, result.model_dir)
        rows = [r for r in load_labelled(path) if r["label"] in novel]
        evaluation = fewshot_evaluation(self.model.load_model(), tuned, tokenizer, rows, novel, cfg.fewshot,
                                        cfg.max_length, self.seed)
        return FewShotResult(**result.model_dump(), evaluation=evaluation)


def EWC(previous_data: str | Path, ewc_lambda: float = 100.0, fisher_samples: int = 64) -> ContinualConfig:
    """Elastic weight consolidation towards the starting weights, Fisher-weighted on the previous task's rows."""
    return ContinualConfig(strategy="ewc", previous_data=str(previous_data), ewc_lambda=ewc_lambda,
                           fisher_samples=fisher_samples)


def Replay(previous_data: str | Path, fraction: float = 0.25) -> ContinualConfig:
    """Mix `fraction` of the previous task's rows into the training rows."""
    return ContinualConfig(strategy="replay", previous_data=str(previous_data), replay_fraction=fraction)


def LwF(alpha: float = 1.0, temperature: float = 2.0) -> ContinualConfig:
    """Learning without forgetting: distil the starting model's outputs on the new rows."""
    return ContinualConfig(strategy="lwf", lwf_alpha=alpha, lwf_temperature=temperature)
