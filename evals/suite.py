"""Score one model on the configured suite: lm-eval benchmarks + held-out perplexity.

The same function scores the base and the tuned model on the same items, so the drift gate can pair
them item by item.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from evals.benchmarks import run_lm_eval, write_mmlu_tasks, write_truthfulqa_tasks
from evals.config import BenchmarkConfig, EvalConfig
from evals.general_text import general_text_samples, text_perplexity
from evals.perplexity import chat_perplexity_ci
from evals.stats import ci_fields
from evals.preference import preference_scores, read_pairs


class Scores(BaseModel):
    means: dict[str, float]
    per_item_path: Path | None = None

    def per_item(self) -> dict[str, np.ndarray]:
        if self.per_item_path is None:
            return {}
        with np.load(self.per_item_path) as data:
            return {k: data[k] for k in data.files}


def write_benchmark_tasks(cfg: BenchmarkConfig, out_dir: Path) -> list[str]:
    """Convert the local benchmark files (on the configured subset) into lm-eval tasks under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = []
    if cfg.mmlu_forms:
        tasks += write_mmlu_tasks(cfg.data_dir, out_dir, cfg.mmlu_per_subject, cfg.num_fewshot, cfg.seed, cfg.mmlu_forms)
    tasks += write_truthfulqa_tasks(cfg.data_dir, out_dir, cfg.truthfulqa_limit, cfg.seed, cfg.truthfulqa_primer)
    return tasks


def read_messages(path: Path, limit: int | None) -> list[list[dict]]:
    rows = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if row.get("messages") and row["messages"][-1]["role"] == "assistant":
                rows.append(row["messages"])
            if limit and len(rows) >= limit:
                break
    return rows


def score_model(model, tokenizer, cfg: EvalConfig, tasks_dir: Path | None, tasks: list[str],
                validation_path: Path | None, chat_template: str | None, out_dir: Path) -> Scores:
    out_dir.mkdir(parents=True, exist_ok=True)
    means: dict[str, float] = {}
    per_item: dict[str, np.ndarray] = {}
    if cfg.perplexity and validation_path is not None:
        rows = read_messages(validation_path, cfg.perplexity_max_rows)
        if rows:
            means.update(ci_fields("perplexity", chat_perplexity_ci(
                model, tokenizer, rows, chat_template=chat_template, n_resamples=cfg.drift.n_resamples,
                confidence=cfg.drift.confidence, seed=cfg.drift.seed)))
        if pairs := read_pairs(validation_path, cfg.perplexity_max_rows):  # preference data: held-out pairs
            pref = preference_scores(model, tokenizer, pairs)
            per_item.update(pref)
            means.update({k: float(v.mean()) for k, v in pref.items()})
    if cfg.general_text_rows:
        texts = general_text_samples(cfg.benchmarks.data_dir, cfg.general_text_rows, cfg.benchmarks.seed)
        means["general_perplexity"] = text_perplexity(model, tokenizer, texts)
    if cfg.benchmarks.enabled and tasks:
        result = run_lm_eval(model, tokenizer, tasks_dir, tasks, cfg.benchmarks.batch_size)
        means.update(result["means"])
        per_item.update(result["per_item"])
    per_item_path = None
    if per_item:
        per_item_path = out_dir / "per_item.npz"
        np.savez(per_item_path, **per_item)
    scores = Scores(means=means, per_item_path=per_item_path)
    (out_dir / "scores.json").write_text(scores.model_dump_json(indent=1))
    return scores


def validation_prompts(path: Path, n: int) -> tuple[list[list[dict]], list[str]]:
    """The first n validation conversations split into (prompt turns, reference reply); for preference pairs the
    reference is the chosen reply."""
    if not n:
        return [], []
    if pairs := read_pairs(path, n):
        return [p["messages"] for p in pairs], [p["chosen"] for p in pairs]
    rows = read_messages(path, n)
    return [r[:-1] for r in rows], [r[-1]["content"] for r in rows]


def generation_scores(replies: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """Per-item ROUGE-L, BLEU and exact match of replies against the reference replies."""
    from evals.metrics import compute_all

    if not replies:
        return {}
    return {f"gen_{name}": np.asarray(result.per_item, dtype=float)
            for name, result in compute_all(replies, references).items()}
