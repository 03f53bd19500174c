"""Python API in the design documents' style (SFTTrainer, DPOTrainer, KTOTrainer, ORPOTrainer, SimPOTrainer,
RewardModelTrainer), thin over the same recipe functions the flows run:

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

from tasks.data.formats import KIND, detect, normalise
from tasks.model import ModelRef
from tasks.training.common import TrainResult
from tasks.training.config import DPOConfig, KTOConfig, ORPOConfig, SimPOConfig, TrainConfig
from tasks.training.recipes import check_data, trainer_for


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
