"""Evaluation section of the config."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from evals.drift import DriftConfig
from tasks.schema import Section


class BenchmarkConfig(Section):
    enabled: bool = True
    data_dir: Path = Path("../shared/data")
    """Folder holding mmlu/{dev,test}/*.csv and truthfulqa/TruthfulQA.csv."""
    mmlu_per_subject: int | None = Field(2, gt=0)  # questions sampled per subject (57 subjects); null = all
    mmlu_forms: list[Literal["letter", "cloze"]] = ["letter", "cloze"]  # cloze gives signal on small models
    num_fewshot: int = Field(0, ge=0, le=5)
    truthfulqa_limit: int | None = Field(100, gt=0)  # questions sampled; null = all 817
    truthfulqa_primer: bool = True  # the standard 6-shot QA primer; ~8x the tokens per request
    batch_size: int = Field(16, gt=0)
    seed: int = 0


class EvalConfig(Section):
    perplexity: bool = True
    perplexity_max_rows: int | None = Field(200, gt=0)
    general_text_rows: int = Field(0, ge=0)
    """MMLU-val questions with their answers scored as plain text: perplexity there shows forgetting (0 = off)."""
    reward_model: str | None = None
    """Reward model judging tuned vs base replies (win-rate with CI): a folder written by the reward recipe, or its
    MLflow model URI (`models:/smollm2-reward-hh@champion`)."""
    independent_test: Path | None = None
    """Labelled rows written apart from the training data (classify): accuracy on data nothing was tuned on."""
    benchmarks: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    sample_generations: int = Field(4, ge=0)
    """Validation prompts answered by base and tuned: shown side by side, scored against the references."""
    max_new_tokens: int = Field(96, gt=0)
