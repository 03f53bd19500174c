"""MLflow pyfunc flavour for an adapter: the registry stores the adapter and a reference to its base model.

Logging the base weights with every version would copy hundreds of MB per run; the base is re-loaded
from its reference (HF id or local path) at load time, as MLflow's PEFT guidance recommends.
"""
from __future__ import annotations

from pathlib import Path

import mlflow

from tasks.model import ModelRef


_REQUIREMENTS = ["tuneforge", "torch==2.13.0", "transformers==5.23.0", "peft==0.21.2"]


class AdapterModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from tasks.model import ModelRef
        from tasks.training.loading import load_trained

        cfg, files = context.model_config, context.artifacts
        self.max_new_tokens = int(cfg.get("max_new_tokens", 128))
        base = ModelRef.of(cfg["base_model"], cfg.get("dtype", "float32"), bool(cfg.get("trust_remote_code", False)))
        self.model, self.tokenizer = load_trained(base, files["tokenizer"], files.get("adapter"), files.get("model"))

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        """Greedy chat replies, one per prompt."""
        from evals.perplexity import generate_replies

        messages = [[{"role": "user", "content": p}] for p in model_input]
        n = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        return generate_replies(self.model, self.tokenizer, messages, n)


class RewardModel(mlflow.pyfunc.PythonModel):
    """A registered reward model: `predict([{"prompt": ..., "reply": ...}, ...])` -> one score per row."""

    def load_context(self, context):
        from evals.winrate import RewardJudge

        self.judge = RewardJudge(context.artifacts["model"])

    def predict(self, context, model_input: list[dict[str, str]], params: dict | None = None) -> list[float]:
        return self.judge.score([r["prompt"] for r in model_input], [r["reply"] for r in model_input]).tolist()


class ClassifierModel(mlflow.pyfunc.PythonModel):
    """A registered text classifier (recipe classify): `predict(["text", ...])` -> one label per text."""

    def load_context(self, context):
        from evals.classification import Classifier

        self.classifier = Classifier(context.artifacts["model"])

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        return self.classifier(list(model_input))


# recipes whose package is a whole scoring model with its own pyfunc entry point (not a generator)
_SCORERS = {"reward": "pyfunc_reward.py", "classify": "pyfunc_classifier.py"}


def save_pyfunc(path, weights_dir, tokenizer_dir, base: ModelRef, full_weights: bool, recipe: str = "sft") -> None:
    """An adapter is stored with a reference to its base; full-weight methods, reward models and classifiers
    store the whole model."""
    if recipe in _SCORERS:
        mlflow.pyfunc.save_model(
            path=str(path), python_model=str(Path(__file__).with_name(_SCORERS[recipe])),
            artifacts={"model": str(weights_dir)}, pip_requirements=_REQUIREMENTS)
        return
    mlflow.pyfunc.save_model(
        path=str(path), python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={"model" if full_weights else "adapter": str(weights_dir), "tokenizer": str(tokenizer_dir)},
        model_config={"base_model": base.name_or_path, "dtype": base.dtype,
                      "trust_remote_code": base.trust_remote_code, "max_new_tokens": 128},
        pip_requirements=_REQUIREMENTS,
    )
