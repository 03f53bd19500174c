"""Harness check and cost of the benchmark evaluation on the base SmolLM2-135M-Instruct (CPU).

    .venv/bin/python bench/bench_eval.py --mmlu-per-subject 1 --forms letter,cloze --truthfulqa-limit 20 --primer
    .venv/bin/python bench/bench_eval.py --mmlu-per-subject 1 --truthfulqa-limit 20 --no-primer --skip-cli
    .venv/bin/python bench/bench_eval.py --mmlu-per-subject 0 --truthfulqa-limit 0 --forms letter --only truthfulqa \
        --resume --out runs/bench_eval_full_tqa        # full sets: hours on a CPU; rerun the same line to go on

(a) The project's path (evals.suite.write_benchmark_tasks + evals.benchmarks.run_lm_eval on the model in
memory) against plain `lm_eval` run by hand as a subprocess on the same task folder, batch size, seeds and
max length. Every lm-eval metric and every per-choice log-likelihood must agree to ~1e-6: if they do, the
project's numbers are lm-eval's numbers and anyone can reproduce them with the printed command.
With --resume each path keeps lm-eval's per-request cache (its own, so neither path can read the other's
answers) and the folder is kept: a killed run goes on where it stopped, and segments.json adds up the
wall time of every segment.
(b) Wall time and tokens/s of the run, and an estimate for the full sets (14,079 MMLU test questions,
817 TruthfulQA) from the tokens the full sets would forward, counted the way lm-eval batches them.
Prints one JSON object and a markdown table; both are also written under --out.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from evals.benchmarks import run_lm_eval, summarise  # noqa: E402
from evals.config import BenchmarkConfig  # noqa: E402
from evals.suite import write_benchmark_tasks  # noqa: E402
from tasks.model import EMBEDDED, load_model, load_tokenizer, resolve  # noqa: E402

BATCH_SIZE, MAX_LENGTH, SEED = 16, 2048, 0  # what run_lm_eval uses; the CLI run is given the same
TOL = 1e-6


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mmlu-per-subject", type=int, default=1, help="questions per subject (57); 0 = all 14,079")
    p.add_argument("--truthfulqa-limit", type=int, default=20, help="questions sampled; 0 = all 817")
    p.add_argument("--forms", default="letter,cloze", help="MMLU forms, comma-separated: letter, cloze (or empty)")
    p.add_argument("--primer", action=argparse.BooleanOptionalAction, default=True, help="TruthfulQA 6-shot primer")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_eval", help="run folder (replaced)")
    p.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--skip-cli", action="store_true", help="time the project path only (no harness check)")
    p.add_argument("--no-extrapolate", action="store_true", help="skip counting the full sets' tokens")
    p.add_argument("--only", choices=["mmlu", "truthfulqa"], help="run one benchmark's tasks")
    p.add_argument("--resume", action="store_true", help="keep --out and per-path request caches; go on where a run stopped")
    return p.parse_args()


@contextlib.contextmanager
def capture_simple_evaluate(into: dict):
    """Keep lm-eval's raw output (all metrics, per-choice log-likelihoods) that run_lm_eval summarises away."""
    import lm_eval

    original = lm_eval.simple_evaluate

    def spy(*args, **kwargs):
        into.update(original(*args, **kwargs))
        return into

    lm_eval.simple_evaluate = spy
    try:
        yield into
    finally:
        lm_eval.simple_evaluate = original


@contextlib.contextmanager
def count_forwards(model, stats: dict):
    """Sum the model's forward seconds and the tokens it computed (padding included)."""
    stats.update(calls=0, padded_tokens=0, forward_s=0.0)

    def before(module, args, kwargs):
        ids = args[0] if args else kwargs["input_ids"]
        stats["calls"] += 1
        stats["padded_tokens"] += int(ids.numel())
        stats["_t"] = time.perf_counter()

    def after(module, args, kwargs, output):
        stats["forward_s"] += time.perf_counter() - stats.pop("_t")

    hooks = [model.register_forward_pre_hook(before, with_kwargs=True),
             model.register_forward_hook(after, with_kwargs=True)]
    try:
        yield stats
    finally:
        for h in hooks:
            h.remove()


@contextlib.contextmanager
def segment(log: Path, path: str):
    """Record this segment's wall time in `log` every 30 s, so the time of a run that is killed still counts."""
    start, stop = time.time(), threading.Event()

    def beat(finished: bool = False) -> None:
        rows = json.loads(log.read_text()) if log.exists() else {}
        rows[f"{path}@{start:.0f}"] = {"path": path, "wall_s": round(time.time() - start, 1), "finished": finished}
        log.write_text(json.dumps(rows, indent=1))

    def loop() -> None:
        while not stop.wait(30):
            beat()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    finished = False
    try:
        yield
        finished = True
    finally:
        stop.set()
        thread.join()
        beat(finished)


def wall_per_path(log: Path) -> dict[str, float]:
    totals: dict[str, float] = {}
    for row in json.loads(log.read_text()).values():
        totals[row["path"]] = round(totals.get(row["path"], 0.0) + row["wall_s"], 1)
    return totals


def run_project(model, tokenizer, task_dir: Path, tasks: list[str], cache: str | None) -> dict:
    raw: dict = {}
    forward: dict = {}
    t = time.perf_counter()
    with capture_simple_evaluate(raw), count_forwards(model, forward):
        run_lm_eval(model, tokenizer, task_dir, tasks, BATCH_SIZE, cache=cache)
    return {"raw": raw, "wall_s": time.perf_counter() - t, "forward": forward}


def cli_command(model_dir: str, task_dir: Path, tasks: list[str], out: Path, cache: str | None) -> list[str]:
    return [str(ROOT / ".venv" / "bin" / "lm_eval"), "--model", "hf",
            "--model_args", f"pretrained={model_dir},dtype=float32,max_length={MAX_LENGTH}",
            "--tasks", ",".join(tasks), "--include_path", str(task_dir), "--batch_size", str(BATCH_SIZE),
            "--device", "cpu", "--seed", ",".join([str(SEED)] * 4),
            "--output_path", str(out), "--log_samples"] + (["--use_cache", cache] if cache else [])


def run_cli(cmd: list[str], out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # one results file per run; a resumed run writes a new one
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"lm_eval failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    (results_file,) = out.rglob("results_*.json")
    raw = json.loads(results_file.read_text())
    raw["samples"] = {}
    for path in out.rglob("samples_*.jsonl"):
        # split on "\n" only: lm-eval writes raw U+2028/U+0085 inside strings, which splitlines() breaks on
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
        raw["samples"][path.name[len("samples_"):].rsplit("_", 1)[0]] = rows
    return {"raw": raw, "wall_s": wall}


def _metrics(raw: dict) -> dict[str, float]:
    """{task/metric: value} for every numeric metric lm-eval reported (stderr left out)."""
    out = {}
    for task, metrics in raw["results"].items():
        for key, value in metrics.items():
            if "," in key and "stderr" not in key and isinstance(value, (int, float)):
                out[f"{task}/{key}"] = float(value)
    return out


def _logliks(raw: dict) -> dict[tuple[str, int], np.ndarray]:
    return {(task, s["doc_id"]): np.array([float(r[0]) for r in s["filtered_resps"]], dtype=np.float64)
            for task, samples in raw["samples"].items() for s in samples}


def compare(project: dict, cli: dict) -> dict:
    """Both paths' numbers per reported metric, plus the largest gap over all metrics and log-likelihoods."""
    ours, theirs = summarise(project), summarise(cli)
    rows = {name: {"project": ours["means"][name], "lm_eval_cli": theirs["means"].get(name, float("nan"))}
            for name in ours["means"]}
    for row in rows.values():
        row["abs_diff"] = abs(row["project"] - row["lm_eval_cli"])
        row["equal"] = bool(row["abs_diff"] <= TOL)
    m_ours, m_theirs = _metrics(project), _metrics(cli)
    l_ours, l_theirs = _logliks(project), _logliks(cli)
    metric_gap = max((abs(m_ours[k] - m_theirs[k]) for k in m_ours if k in m_theirs), default=0.0)
    loglik_gap = max((float(np.max(np.abs(l_ours[k] - l_theirs[k]))) for k in l_ours if k in l_theirs), default=0.0)
    same_items = all(np.array_equal(ours["per_item"][k], theirs["per_item"].get(k)) for k in ours["per_item"])
    return {"metrics": rows, "all_metrics_compared": len(set(m_ours) & set(m_theirs)),
            "metrics_missing_in_cli": sorted(set(m_ours) - set(m_theirs)), "max_metric_abs_diff": metric_gap,
            "choices_compared": sum(len(v) for k, v in l_ours.items() if k in l_theirs),
            "max_loglik_abs_diff": loglik_gap, "per_item_scores_identical": bool(same_items),
            "equal": bool(metric_gap <= TOL and loglik_gap <= TOL and same_items)}


def _family(task: str) -> str:
    if task.startswith("tf_mmlu_cloze"):
        return "mmlu_cloze"
    return "mmlu_letter" if task.startswith("tf_mmlu") else "truthfulqa"


def forward_tokens(lm, task_requests: dict[str, list[tuple[str, str]]]) -> dict[str, dict]:
    """Docs-free count of what lm-eval forwards: one input per distinct context+continuation[:-1] (so a
    letter-form question with one-token answers costs one forward, a cloze question one per choice)."""
    seen: set[tuple[int, ...]] = set()
    out: dict[str, dict] = {}
    for task in sorted(task_requests):
        fam = out.setdefault(_family(task), {"requests": 0, "forwards": 0, "tokens": 0})
        for ctx, cont in task_requests[task]:
            ctx_enc, cont_enc = lm._encode_pair(ctx, cont)
            key = tuple((ctx_enc + cont_enc)[-(MAX_LENGTH + 1):][:-1])
            fam["requests"] += 1
            if key not in seen:
                seen.add(key)
                fam["forwards"] += 1
                fam["tokens"] += len(key)
    return out


def requests_of_samples(raw: dict) -> dict[str, list[tuple[str, str]]]:
    return {task: [tuple(a) for s in samples for a in s["arguments"]] for task, samples in raw["samples"].items()}


def requests_of_tasks(task_dir: Path, tasks: list[str]) -> tuple[dict[str, list[tuple[str, str]]], dict[str, int]]:
    """lm-eval's own requests and doc counts for the tasks in task_dir, built without running a model."""
    from lm_eval.tasks import TaskManager

    loaded = TaskManager(include_path=str(task_dir), include_defaults=False).load(tasks)["tasks"]
    requests, docs = {}, {}
    for name, task in loaded.items():
        task.build_all_requests(limit=None, rank=0, world_size=1)
        requests[name] = [tuple(inst.arguments) for inst in task.instances]
        docs[name] = len({inst.doc_id for inst in task.instances})
    return requests, docs


def doc_counts(raw: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task, samples in raw["samples"].items():
        fam = _family(task)
        if not task.endswith("_mc2"):  # MC1 and MC2 score the same TruthfulQA questions
            counts[fam] = counts.get(fam, 0) + len(samples)
    return counts


def extrapolate(cfg: BenchmarkConfig, lm, out: Path, real_tokens: int, wall_s: float, forward_rate: float) -> dict:
    """Full-set seconds from the full sets' forward tokens, at two rates measured in this run.

    `est_s` uses this run's end-to-end rate (real tokens / wall): an upper bound, since a small subset
    wastes more on padding and task loading. `est_s_forward` uses the model's forward rate with no
    padding at all: a lower bound. The full sets, sorted by length in large batches, land between.
    """
    full_cfg = cfg.model_copy(update={"mmlu_per_subject": None, "truthfulqa_limit": None})
    full_dir = out / "full_tasks"
    t = time.perf_counter()
    tasks = write_benchmark_tasks(full_cfg, full_dir)
    requests, docs = requests_of_tasks(full_dir, tasks)
    fams = forward_tokens(lm, requests)
    for name, n in docs.items():
        if not name.endswith("_mc2"):
            fams[_family(name)]["docs"] = fams[_family(name)].get("docs", 0) + n
    rate = real_tokens / wall_s
    for fam in fams.values():
        fam["est_s"] = round(fam["tokens"] / rate)
        fam["est_s_forward"] = round(fam["tokens"] / forward_rate)
    total = sum(f["tokens"] for f in fams.values())
    return {"tokens_per_s_end_to_end": round(rate, 1), "tokens_per_s_forward": round(forward_rate, 1),
            "families": fams, "total_tokens": total, "est_total_h": round(total / rate / 3600, 2),
            "est_total_h_forward": round(total / forward_rate / 3600, 2), "counting_s": round(time.perf_counter() - t, 1)}


def markdown(report: dict) -> str:
    lines = []
    check = report.get("harness_check")
    if check:
        lines += ["| metric | project (run_lm_eval) | plain lm_eval CLI | abs diff | equal |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['project']:.6f} | {v['lm_eval_cli']:.6f} | {v['abs_diff']:.1e} | {v['equal']} |"
                  for k, v in check["metrics"].items()]
        lines += ["", f"all {check['all_metrics_compared']} lm-eval metrics: max abs diff {check['max_metric_abs_diff']:.1e}; "
                      f"{check['choices_compared']} choice log-likelihoods: max abs diff {check['max_loglik_abs_diff']:.1e}", ""]
    t = report["timing"]
    lines += ["| run | wall s | forward s | tokens computed (incl. padding) | tokens/s (forward) | real tokens | tokens/s (end to end) |",
              "|---|---|---|---|---|---|---|",
              f"| project path | {t['project_wall_s']} | {t['forward_s']} | {t['padded_tokens']} | {t['forward_tokens_per_s']} "
              f"| {t['real_tokens']} | {t['real_tokens_per_s_end_to_end']} |"]
    if "cli_wall_s" in t:
        lines.append(f"| plain lm_eval (subprocess, incl. model load) | {t['cli_wall_s']} | | | | | |")
    est = report.get("full_set_estimate")
    if est:
        lines += ["", f"| full set | questions | forwards | tokens | est. h at {est['tokens_per_s_end_to_end']} tok/s "
                      f"(end to end) | est. h at {est['tokens_per_s_forward']} tok/s (forward, no padding) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {k} | {v.get('docs', '')} | {v['forwards']} | {v['tokens']} | {v['est_s'] / 3600:.2f} "
                  f"| {v['est_s_forward'] / 3600:.2f} |" for k, v in est["families"].items()]
        lines.append(f"| total | | | {est['total_tokens']} | {est['est_total_h']} | {est['est_total_h_forward']} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    forms = [f for f in args.forms.split(",") if f]
    cfg = BenchmarkConfig(data_dir=args.shared_data, mmlu_per_subject=args.mmlu_per_subject or None, mmlu_forms=forms,
                          truthfulqa_limit=args.truthfulqa_limit or None, truthfulqa_primer=args.primer,
                          batch_size=BATCH_SIZE, seed=SEED)
    if not args.resume:
        shutil.rmtree(args.out, ignore_errors=True)
    task_dir, log = args.out / "tasks", args.out / "segments.json"
    tasks = write_benchmark_tasks(cfg, task_dir)  # seeded: a resumed run writes the same tasks
    if args.only:
        tasks = [t for t in tasks if ("truthfulqa" in t) == (args.only == "truthfulqa")]
    cache = {p: str(args.out / "cache" / p) if args.resume else None for p in ("project", "cli")}
    model_dir = resolve(EMBEDDED)

    t = time.perf_counter()
    model, tokenizer = load_model(model_dir, "float32"), load_tokenizer(model_dir)
    load_s = time.perf_counter() - t
    with segment(log, "project"):
        project = run_project(model, tokenizer, task_dir, tasks, cache["project"])

    from lm_eval.models.huggingface import HFLM

    counter = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=BATCH_SIZE, max_length=MAX_LENGTH)
    fams = forward_tokens(counter, requests_of_samples(project["raw"]))
    for name, n in doc_counts(project["raw"]).items():
        fams[name]["docs"] = n
    real = sum(f["tokens"] for f in fams.values())
    fwd = project["forward"]
    report: dict = {
        "settings": {"mmlu_per_subject": cfg.mmlu_per_subject, "truthfulqa_limit": cfg.truthfulqa_limit, "forms": forms,
                     "primer": cfg.truthfulqa_primer, "batch_size": BATCH_SIZE, "max_length": MAX_LENGTH,
                     "torch_threads": __import__("torch").get_num_threads(), "load_avg_1m_at_start": os.getloadavg()[0],
                     "tasks": tasks},
        "project_scores": summarise(project["raw"])["means"],
        "timing": {"model_load_s": round(load_s, 1), "project_wall_s": round(project["wall_s"], 1),
                   "forward_s": round(fwd["forward_s"], 1), "forward_calls": fwd["calls"],
                   "padded_tokens": fwd["padded_tokens"],
                   "forward_tokens_per_s": round(fwd["padded_tokens"] / max(fwd["forward_s"], 1e-9), 1),
                   "real_tokens": real, "real_tokens_per_s_end_to_end": round(real / project["wall_s"], 1),
                   "families": fams},
    }
    if not args.skip_cli:
        cmd = cli_command(model_dir, task_dir, tasks, args.out / "lm_eval_cli", cache["cli"])
        with segment(log, "cli"):
            cli = run_cli(cmd, args.out / "lm_eval_cli")
        report["timing"]["cli_wall_s"] = round(cli["wall_s"], 1)
        report["harness_check"] = {"command": " ".join(cmd), **compare(project["raw"], cli["raw"])}
    if not args.no_extrapolate:
        forward_rate = fwd["padded_tokens"] / max(fwd["forward_s"], 1e-9)
        report["full_set_estimate"] = extrapolate(cfg, counter, args.out, real, project["wall_s"], forward_rate)
    report["timing"]["wall_s_all_segments"] = wall_per_path(log)  # a resumed run's whole cost, per path
    text = json.dumps(report, indent=1, default=str)
    (args.out / "bench_eval.json").write_text(text)
    (args.out / "bench_eval.md").write_text(markdown(report) + "\n")
    print(text)
    print(markdown(report))


if __name__ == "__main__":
    main()
