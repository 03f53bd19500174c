"""Evaluate stages: score the base once (cached across runs), score the tuned model, gate on drift."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from pydantic import BaseModel

from evals.config import EvalConfig
from evals.drift import GateVerdict, MetricRow, drift_gate
from evals.classification import Classifier, classification_scores, load_labelled
from evals.distill import chat_loglik, distill_comparison
from evals.metrics import degenerate_rate
from evals.perplexity import generate_replies
from evals.preference import implicit_reward, read_pairs
from evals.reward import accuracy_summary, pairwise_scores
from evals.suite import Scores, generation_scores, read_messages, score_model, validation_prompts, write_benchmark_tasks
from evals.kl import sampled_kl
from evals.stats import MIN_ITEMS_FOR_CI, ci_fields, mean_ci, paired_bootstrap, paired_win_rate
from evals.winrate import RewardJudge
from tasks.data.pipeline import PreparedData
from tasks.init_from import model_folder
from tasks.model import ModelRef
from tasks.stage import RunRef, STAGE_CACHE, STAGE_RESULTS
from tasks.training.common import Trained
from tasks.training.config import ONLINE_RL, TrainConfig
from tasks.training.loading import load_trained
from tasks.training.templates import training_chat_template
from tasks.vocab import ExtensionResult


class ModelEval(BaseModel):
    scores: Scores
    replies: list[str]

    def summary(self) -> str:
        return _metrics(self.scores.means)


class EvalResult(BaseModel):
    base: dict[str, float]
    tuned: dict[str, float]
    verdict: GateVerdict
    report_path: Path
    samples: list[dict]

    def summary(self) -> str:
        v = self.verdict
        gate = "gate passed" if v.passed else "gate FAILED: " + "; ".join(v.reasons)
        return f"{gate} ({len(v.rows)} metrics at {v.confidence:.0%}); {_metrics(self.tuned)}"


def _metrics(means: dict[str, float], at_most: int = 4) -> str:
    """The first few metrics, rounded, for a one-line summary (their intervals and counts left out)."""
    names = [k for k in means if not k.endswith(("_ci_low", "_ci_high", "_n"))]
    shown = [f"{k} {means[k]:.4g}" for k in names[:at_most]]
    return ", ".join(shown) + (f", +{len(names) - at_most} more" if len(names) > at_most else "")


def _evaluate_model(model, tokenizer, cfg: EvalConfig, validation_path: Path, out_dir: Path) -> ModelEval:
    """Benchmarks, perplexity and generations for one model; the same items for base and tuned."""
    tasks_dir = out_dir / "lm_eval_tasks"
    tasks = write_benchmark_tasks(cfg.benchmarks, tasks_dir) if cfg.benchmarks.enabled else []
    template = training_chat_template(tokenizer) or tokenizer.chat_template
    scores = score_model(model, tokenizer, cfg, tasks_dir, tasks, validation_path, template, out_dir)
    prompts, references = validation_prompts(validation_path, cfg.sample_generations)
    replies = generate_replies(model, tokenizer, prompts, cfg.max_new_tokens)
    per_item = {**scores.per_item(), **generation_scores(replies, references)}
    if per_item:
        scores.per_item_path = out_dir / "per_item.npz"
        np.savez(scores.per_item_path, **per_item)
    scores.means.update({k: float(np.mean(v)) for k, v in per_item.items() if k.startswith("gen_")})
    if replies:
        scores.means["degenerate_rate"] = degenerate_rate(replies)
    return ModelEval(scores=scores, replies=replies)


# Recipes whose output is not a causal LM to score like the base: each is measured inside `evaluate` against its own
# baseline (chance, the majority label, the untrained backbone).
NO_BASE_SCORES = frozenset({"reward", "classify", "fewshot"})


# Bumped when how the base is scored changes outside `score_base`'s own source (which is all TASK_SOURCE sees), so a
# cached base on the old terms is not paired with a tuned model on the new ones. 2: BLEU on 0-1, degenerate_rate.
BASE_SCORES_VERSION = 3


def _data_digest(context, inputs: dict) -> str:
    recipe = inputs.get("recipe")
    return f"{inputs['data'].digest}|v{BASE_SCORES_VERSION}" + (f"|{recipe}" if recipe in NO_BASE_SCORES else "")


# The base model's scores depend on the base, the eval settings and the data, not on the run or on which generative
# recipe trains next: leave the run-specific paths and the recipe out of the key so later runs reuse them (the data
# digest stands in for the data's paths; a reward model, which has no base scores, keys apart).
BASE_CACHE = (INPUTS - "out_dir" - "run" - "data" - "recipe" + TASK_SOURCE
              + CachePolicy.from_cache_key_fn(_data_digest))


@task(name="score_base", cache_policy=BASE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS)
def score_base(cfg: EvalConfig, model: ModelRef, data: PreparedData, out_dir: Path, run: RunRef,
               recipe: str = "sft") -> ModelEval:
    """Score the untouched base model (computed once per base, eval config and data set). A reward model, a
    classifier or a few-shot embedder has no such base: `evaluate` measures it against its own baseline."""
    if recipe in NO_BASE_SCORES:
        return ModelEval(scores=Scores(means={}), replies=[])
    return _evaluate_model(model.load_model(), model.load_tokenizer(), cfg, data.validation_path, Path(out_dir))


def _evaluate_reward(cfg: EvalConfig, trained: Trained, data: PreparedData, out_dir: Path) -> EvalResult:
    """Held-out pairwise accuracy of a reward model, ties apart; the gate asks that its interval lie above chance."""
    scores = pairwise_scores(RewardJudge(trained.model_dir), read_pairs(data.validation_path, None))
    d = cfg.drift
    summary = with_counts(accuracy_summary(scores, n_resamples=d.n_resamples, confidence=d.confidence, seed=d.seed),
                          len(scores["reward_accuracy"]))
    verdict = _above_baseline("reward_accuracy", summary, "reward_accuracy", 0.5, "chance", int(summary["reward_pairs"]), d)
    return EvalResult(base={"reward_accuracy": 0.5}, tuned=summary, report_path=out_dir / "eval_report.json",
                      verdict=verdict, samples=[])


def _above_baseline(metric: str, summary: dict[str, float], key: str, baseline: float, baseline_name: str, n: int,
                    d) -> GateVerdict:
    """The gate of a model measured against a fixed baseline: the interval of `summary[key]` must lie above it."""
    est, low, high = summary[key], summary[f"{key}_ci_low"], summary[f"{key}_ci_high"]
    passed = low > baseline
    row = MetricRow(metric=metric, n=n, base_mean=baseline, tuned_mean=est, delta=est - baseline,
                    ci_low=low - baseline, ci_high=high - baseline, threshold=None, blocked=not passed)
    reasons = [] if passed else [f"{metric} {est:.3f} (CI [{low:.3f}, {high:.3f}]) is not above {baseline_name} "
                                 f"({baseline:.3f})"]
    return GateVerdict(passed=passed, reasons=reasons, rows=[row], confidence=d.confidence)


def with_counts(summary: dict[str, float], n: int) -> dict[str, float]:
    """`summary` plus `<metric>_n = n` beside every `<metric>_ci_low` that has no count yet: the report greys out
    intervals drawn from too few items, and needs the count to know."""
    counts = {f"{k[:-len('_ci_low')]}_n": float(n) for k in summary if k.endswith("_ci_low")}
    return {**summary, **{k: v for k, v in counts.items() if k not in summary}}


def _evaluate_classifier(cfg: EvalConfig, trained: Trained, data: PreparedData, out_dir: Path) -> EvalResult:
    """Accuracy and macro-F1 with intervals on the held-out split, and on `eval.independent_test` (rows written
    apart from the training data) when set; the gate asks that held-out accuracy lie above the majority label."""
    d = cfg.drift
    classifier = Classifier(trained.model_dir)
    rows = load_labelled(data.validation_path)
    texts, truth = [r["text"] for r in rows], [r["label"] for r in rows]
    train_labels = [r["label"] for r in load_labelled(data.train_path)]
    predicted = classifier(texts)
    kw = dict(n_resamples=d.n_resamples, confidence=d.confidence, seed=d.seed)
    summary = with_counts(classification_scores(truth, predicted, train_labels, prefix="classify_", **kw), len(truth))
    if cfg.independent_test:
        test = load_labelled(cfg.independent_test)
        summary |= with_counts(classification_scores([r["label"] for r in test], classifier([r["text"] for r in test]),
                                                     train_labels, prefix="classify_independent_", **kw), len(test))
    majority = summary["classify_majority_baseline"]
    verdict = _above_baseline("classify_accuracy", summary, "classify_accuracy", majority, "the majority label",
                              len(truth), d)
    samples = [{"prompt": t, "base": f"(expected) {y}", "tuned": p}
               for t, y, p in list(zip(texts, truth, predicted))[:cfg.sample_generations or 8]]
    return EvalResult(base={"classify_accuracy": majority}, tuned=summary, report_path=out_dir / "eval_report.json",
                      verdict=verdict, samples=samples)


def _evaluate_fewshot(cfg: EvalConfig, train: TrainConfig, model: ModelRef, vocab: ExtensionResult,
                      trained: Trained, data: PreparedData, out_dir: Path) -> EvalResult:
    """N-way K-shot accuracy on the classes meta-training never saw, for the tuned and the untrained backbone on
    the same episodes; the gate asks that the tuned interval lie above chance (1 / n_ways)."""
    from tasks.training.fewshot import fewshot_evaluation

    split = json.loads((trained.history_path.parent / "classes.json").read_text())
    rows = [r for path in (data.train_path, data.validation_path) for r in load_labelled(path)
            if r["label"] in split["held_out"]]
    tuned_model, tokenizer = load_trained(model, vocab.tokenizer_dir, trained.adapter_dir, trained.model_dir)
    d = cfg.drift
    summary = fewshot_evaluation(model.load_model(), tuned_model, tokenizer, rows, split["held_out"], train.fewshot,
                                 train.max_length, d.seed, n_resamples=d.n_resamples, confidence=d.confidence)
    summary = with_counts(summary, int(summary["fewshot_episodes"]))
    chance = summary["fewshot_chance"]
    verdict = _above_baseline("fewshot_accuracy", summary, "fewshot_acc_tuned", chance, "chance",
                              int(summary["fewshot_episodes"]), d)
    return EvalResult(base={"fewshot_accuracy": summary["fewshot_acc_base"], "chance": chance}, tuned=summary,
                      report_path=out_dir / "eval_report.json", verdict=verdict, samples=[])


@task(name="evaluate", cache_policy=STAGE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS)
def evaluate(cfg: EvalConfig, base: ModelEval, model: ModelRef, vocab: ExtensionResult, trained: Trained,
             data: PreparedData, out_dir: Path, run: RunRef, train: TrainConfig | None = None) -> EvalResult:
    """Score the tuned model (adapter or full weights) on the base's items, gate on paired drift, log it all.
    `train` (the run's training section) tells the recipe-specific measures what they need."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = train or TrainConfig()  # the merge flow: no training section of its own
    if trained.recipe == "reward":
        result = _evaluate_reward(cfg, trained, data, out_dir)
    elif trained.recipe == "classify":
        result = _evaluate_classifier(cfg, trained, data, out_dir)
    elif trained.recipe == "fewshot":
        result = _evaluate_fewshot(cfg, train, model, vocab, trained, data, out_dir)
    else:
        result = _compare(cfg, base, model, vocab, trained, data, out_dir, run.tracking_uri, train)
    result.report_path.write_text(result.model_dump_json(indent=1))

    logger, verdict = run.logger(), result.verdict
    logger.log_metrics({f"eval/base/{k}": v for k, v in result.base.items()})
    logger.log_metrics({f"eval/tuned/{k}": v for k, v in result.tuned.items()})
    for row in verdict.rows:
        logger.log_metrics({f"eval/delta/{row.metric}": row.delta, f"eval/delta_ci_low/{row.metric}": row.ci_low,
                            f"eval/delta_ci_high/{row.metric}": row.ci_high})
    logger.log_metrics({"eval/gate_passed": int(verdict.passed)})
    logger.set_tags({"gate": "passed" if verdict.passed else "failed"})
    logger.log_artifacts(result.report_path, "eval")
    if result.samples:  # prompt, base reply, tuned reply: a table the run page's artifact view can search
        logger.log_table(result.samples, "eval/generations.json")
    create_markdown_artifact(key="eval-verdict", markdown=_markdown(result), description="Drift gate verdict")
    return result


def _compare(cfg: EvalConfig, base: ModelEval, model: ModelRef, vocab: ExtensionResult, trained: Trained,
             data: PreparedData, out_dir: Path, tracking_uri: str, train: TrainConfig) -> EvalResult:
    """The tuned causal LM on the base's items: benchmarks, perplexity or held-out pairs, generations, drift gate;
    plus the previous task's held-out rows for continual learning, and the SFT twin for distillation."""
    validation_path = data.validation_path
    tuned_model, tokenizer = load_trained(model, vocab.tokenizer_dir, trained.adapter_dir, trained.model_dir)
    tuned = _evaluate_model(tuned_model, tokenizer, cfg, validation_path, out_dir / "tuned")
    base_items, tuned_items = base.scores.per_item(), tuned.scores.per_item()
    template = training_chat_template(tokenizer) or tokenizer.chat_template
    if train.continual.previous_data:  # forgetting: the previous task before (the starting model) and after
        rows = read_messages(previous_validation(train.continual.previous_data), cfg.perplexity_max_rows)
        start = model.load_model()
        before = chat_loglik(start, tokenizer, rows, template)
        after = chat_loglik(tuned_model, tokenizer, rows, template)
        base_items["prev_task_loglik"], tuned_items["prev_task_loglik"] = before, after
        base.scores.means["prev_task_perplexity"] = float(np.exp(-before.mean()))
        tuned.scores.means["prev_task_perplexity"] = float(np.exp(-after.mean()))
        if train.continual.previous_accuracy:
            base_items["prev_task_accuracy"] = exact_match(start, tokenizer, rows)
            tuned_items["prev_task_accuracy"] = exact_match(tuned_model, tokenizer, rows)
    if trained.baseline_model_dir is not None:  # distillation: vs the same student trained by SFT, vs the teacher
        tuned.scores.means.update(distill_comparison(tuned_model, trained, tokenizer, validation_path, template, cfg))
    verdict = drift_gate(base_items, tuned_items, cfg.drift)
    if "pref_margin" in base_items:  # preference data: DPO's implicit reward (per unit β) on held-out pairs
        tuned.scores.means.update(implicit_reward(base_items["pref_margin"], tuned_items["pref_margin"]))
    prompts, _ = validation_prompts(validation_path, cfg.sample_generations)
    samples = [{"prompt": p[-1]["content"], "base": b, "tuned": t}
               for p, b, t in zip(prompts, base.replies, tuned.replies)]
    if cfg.reward_model and prompts:  # a reward model folder, package or MLflow model URI
        judge = RewardJudge(model_folder(cfg.reward_model, out_dir / "reward_model", tracking_uri))
        tuned.scores.means.update(judged(judge, prompts, base.replies, tuned.replies, cfg))
    if trained.recipe in ONLINE_RL and prompts:
        tuned.scores.means.update(kl_to_reference(tuned_model, model.load_model(), tokenizer, prompts, cfg))
    return EvalResult(base=base.scores.means, tuned=tuned.scores.means, verdict=verdict,
                      report_path=out_dir / "eval_report.json", samples=samples)


def judged(judge: RewardJudge, prompts: list[list[dict]], base_replies: list[str], tuned_replies: list[str],
           cfg: EvalConfig) -> dict[str, float]:
    """The reward model on base and tuned replies to the same prompts: the paired mean reward delta and the win
    rate (ties half), each with a bootstrap interval."""
    base, tuned = judge.score(prompts, base_replies), judge.score(prompts, tuned_replies)
    d = cfg.drift
    delta = paired_bootstrap(base, tuned, n_resamples=d.n_resamples, confidence=d.confidence, seed=d.seed)
    wins = paired_win_rate(base, tuned, n_resamples=d.n_resamples, confidence=d.confidence, seed=d.seed)
    return {"reward_base": float(base.mean()), "reward_tuned": float(tuned.mean()),
            **ci_fields("reward_delta", delta), **ci_fields("win_rate", wins)}


def kl_to_reference(tuned_model, reference, tokenizer, prompts: list[list[dict]], cfg: EvalConfig) -> dict[str, float]:
    """KL(tuned || starting model) on held-out prompts, from sampled replies (evals/kl.py), with an interval."""
    kls, lengths = sampled_kl(tuned_model, reference, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                              seed=cfg.drift.seed)
    ci = mean_ci(kls, n_resamples=cfg.drift.n_resamples, confidence=cfg.drift.confidence, seed=cfg.drift.seed)
    return {**ci_fields("kl_to_reference", ci), "kl_to_reference_per_token": float(kls.sum() / max(lengths.sum(), 1))}


def exact_match(model, tokenizer, rows: list[list[dict]]) -> np.ndarray:
    """Per row: does the greedy reply to the prompt equal the reference reply (case and spaces aside)?"""
    replies = generate_replies(model, tokenizer, [r[:-1] for r in rows], max_new_tokens=16)
    return np.asarray([" ".join(a.lower().split()) == " ".join(r[-1]["content"].lower().split())
                       for a, r in zip(replies, rows)], dtype=float)


def previous_validation(previous_data: str) -> Path:
    """The previous task's held-out rows: the `validation.jsonl` beside its prepared train split, else the file."""
    path = Path(previous_data)
    held_out = path.with_name("validation.jsonl")
    return held_out if held_out.is_file() and held_out != path else path


def _markdown(result: EvalResult) -> str:
    lines = [f"**Drift gate: {'PASSED' if result.verdict.passed else 'FAILED'}**", "",
             "| metric | base | tuned | delta | CI |", "|---|---|---|---|---|"]
    for r in result.verdict.rows:  # an interval from a handful of items would only look precise: its count instead
        ci = f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]" if r.n >= MIN_ITEMS_FOR_CI else f"(n={r.n})"
        lines.append(f"| {r.metric} | {r.base_mean:.4f} | {r.tuned_mean:.4f} | {r.delta:+.4f} | {ci} |")
    for k in sorted(set(result.base) - {r.metric for r in result.verdict.rows}):
        if k.endswith(("_ci_low", "_ci_high", "_n")):  # an interval's parts: shown beside its metric
            continue
        tuned = result.tuned.get(k, float("nan"))
        delta = f"{tuned - result.base[k]:+.4f}"
        low, high = result.tuned.get(f"{k}_ci_low"), result.tuned.get(f"{k}_ci_high")
        ci = f"tuned [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
        lines.append(f"| {k} | {result.base[k]:.4f} | {tuned:.4f} | {delta} | {ci} |")
    lines += [f"- {reason}" for reason in result.verdict.reasons]
    return "\n".join(lines)
