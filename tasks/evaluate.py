"""Evaluate stage: score base and tuned on the same items, gate on drift, log it all."""
from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from evals.config import EvalConfig
from evals.drift import GateVerdict, drift_gate
from evals.perplexity import generate_replies
from evals.suite import Scores, read_messages, score_model, write_benchmark_tasks
from tasks.model import load_model, load_tokenizer, load_tuned
from tasks.stage import STAGE_CACHE, RunRef
from tasks.training.templates import training_chat_template


class EvalResult(BaseModel):
    base: dict[str, float]
    tuned: dict[str, float]
    verdict: GateVerdict
    report_path: Path
    samples: list[dict]


def _score(model, tokenizer, cfg, tasks_dir, tasks, validation_path, out_dir) -> Scores:
    template = training_chat_template(tokenizer) or tokenizer.chat_template
    return score_model(model, tokenizer, cfg, tasks_dir, tasks, validation_path, template, out_dir)


@task(name="evaluate", cache_policy=STAGE_CACHE, persist_result=True)
def evaluate(cfg: EvalConfig, base_model: str, tokenizer_dir: Path, adapter_dir: Path, validation_path: Path,
             out_dir: Path, run: RunRef, dtype: str = "float32", trust_remote_code: bool = False) -> EvalResult:
    """Benchmarks + perplexity for base and tuned, paired drift gate, side-by-side sample generations."""
    out_dir = Path(out_dir)
    tasks_dir = out_dir / "lm_eval_tasks"
    tasks = write_benchmark_tasks(cfg.benchmarks, tasks_dir) if cfg.benchmarks.enabled else []
    prompts = [m[:-1] for m in read_messages(validation_path, cfg.sample_generations)]

    base_tok = load_tokenizer(base_model, trust_remote_code)
    base = load_model(base_model, dtype, trust_remote_code)
    base_scores = _score(base, base_tok, cfg, tasks_dir, tasks, validation_path, out_dir / "base")
    base_replies = generate_replies(base, base_tok, prompts, cfg.max_new_tokens)
    del base

    tuned, tuned_tok = load_tuned(base_model, str(tokenizer_dir), str(adapter_dir), dtype, trust_remote_code)
    tuned_scores = _score(tuned, tuned_tok, cfg, tasks_dir, tasks, validation_path, out_dir / "tuned")
    tuned_replies = generate_replies(tuned, tuned_tok, prompts, cfg.max_new_tokens)

    verdict = drift_gate(base_scores.per_item(), tuned_scores.per_item(), cfg.drift)
    samples = [{"prompt": p[-1]["content"], "base": b, "tuned": t} for p, b, t in zip(prompts, base_replies, tuned_replies)]
    result = EvalResult(base=base_scores.means, tuned=tuned_scores.means, verdict=verdict,
                        report_path=out_dir / "eval_report.json", samples=samples)
    result.report_path.write_text(result.model_dump_json(indent=1))

    logger = run.logger()
    logger.log_metrics({f"eval/base/{k}": v for k, v in base_scores.means.items()})
    logger.log_metrics({f"eval/tuned/{k}": v for k, v in tuned_scores.means.items()})
    logger.log_metrics({f"eval/delta/{r.metric}": r.delta for r in verdict.rows})
    logger.log_metrics({"eval/gate_passed": int(verdict.passed)})
    logger.set_tags({"gate": "passed" if verdict.passed else "failed"})
    logger.log_artifacts(out_dir / "eval_report.json", "eval")
    create_markdown_artifact(key="eval-verdict", markdown=_markdown(result), description="Drift gate verdict")
    return result


def _markdown(result: EvalResult) -> str:
    lines = [f"**Drift gate: {'PASSED' if result.verdict.passed else 'FAILED'}**", "",
             "| metric | base | tuned | delta | CI |", "|---|---|---|---|---|"]
    for r in result.verdict.rows:
        lines.append(f"| {r.metric} | {r.base_mean:.4f} | {r.tuned_mean:.4f} | {r.delta:+.4f} | [{r.ci_low:+.4f}, {r.ci_high:+.4f}] |")
    for k in sorted(set(result.base) - {r.metric for r in result.verdict.rows}):
        lines.append(f"| {k} | {result.base[k]:.4f} | {result.tuned.get(k, float('nan')):.4f} | | |")
    lines += [f"- {reason}" for reason in result.verdict.reasons]
    return "\n".join(lines)
