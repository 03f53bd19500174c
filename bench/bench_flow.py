"""What the orchestration costs, in one run: the default pipeline against its stages' own work, its training
against the same training standalone, and its evaluation against raw forward passes of the same model.

    .venv/bin/python bench/bench_flow.py [--conf conf/smollm2/lora.yaml] [--out runs/bench/flow]

1. `tuneforge run CONF run_root=OUT/pipeline`, timed from the command's start to its exit. Each stage logs its
   own wall time (`time/<stage>_s`); start-up and orchestration is everything else: interpreter and library
   imports, the private Prefect server, the MLflow run, the stages' hand-offs, the summary.
2. The same training standalone, in a fresh process: `train_sft` with the same config on the split that run
   prepared, with no MLflow run and no Prefect. Throughput on both sides is TRL's `num_tokens / train_runtime`.
3. The base model's evaluation (`_evaluate_model`, what `score_base` and `evaluate` run) with every forward pass
   counted and its shape recorded, against raw forward passes of exactly those shapes (random tokens): what the
   evaluation spends outside the model (tokenising, lm-eval's bookkeeping, decoding) shows as the gap.
Prints a table and appends the numbers as one JSON line to <out>/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.child import report, run_child  # noqa: E402


def run_pipeline(conf: Path, root: Path) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "tuneforge"), "run", str(conf), f"run_root={root}"],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"pipeline failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    run = next(r for r in client.search_runs(experiments, order_by=["attributes.start_time DESC"])
               if "mlflow.parentRunId" not in r.data.tags)
    metrics = run.data.metrics
    stages = {k.removeprefix("time/").removesuffix("_s"): v for k, v in metrics.items() if k.startswith("time/")}
    run_dir = root / "runs" / run.info.run_id
    return {"wall_s": wall, "stages_s": stages, "orchestration_s": wall - sum(stages.values()),
            "train_tokens": metrics.get("train/num_tokens"), "train_runtime_s": metrics.get("train/train_runtime"),
            "train_path": str(run_dir / "data" / "train.jsonl"),
            "validation_path": str(run_dir / "data" / "validation.jsonl")}


def standalone_training(conf: Path, train: Path, validation: Path, out: Path) -> dict:
    """Child process: the pipeline's training call, alone."""
    from tasks.config import load_config
    from tasks.model import ModelRef
    from tasks.training.sft import train_sft

    config = load_config(conf)
    model = ModelRef.of(config.model.name_or_path, config.model.dtype)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = train_sft(config.train, model, Path(model.path), train, out, seed=config.seed, eval_path=validation)
    return {"wall_s": time.perf_counter() - start, "train_tokens": result.train_tokens,
            "train_runtime_s": result.train_runtime_s}


class ForwardMeter:
    """Counts the tokens (non-padding where a mask says so) and the input shape of every forward pass of a model."""

    def __init__(self, model):
        self.tokens, self.shapes = 0, []
        model.register_forward_pre_hook(self._before, with_kwargs=True)

    def _before(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None and mask.shape == ids.shape else ids.numel()
        self.shapes.append(tuple(ids.shape))


def evaluation_speed(conf: Path, validation: Path, out: Path) -> dict:
    """Child process: the evaluation of the base model, metered, then raw forward passes of the same shape."""
    import torch

    from tasks.config import load_config
    from tasks.evaluate import _evaluate_model
    from tasks.model import ModelRef

    config = load_config(conf)
    ref = ModelRef.of(config.model.name_or_path, config.model.dtype)
    model, tokenizer = ref.load_model().eval(), ref.load_tokenizer(Path(ref.path))
    meter = ForwardMeter(model)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    _evaluate_model(model, tokenizer, config.eval, validation, out)
    wall = time.perf_counter() - start
    # raw: the same forward shapes again, random tokens, nothing else (no tokenising, no lm-eval, no decoding)
    shapes, tokens = list(meter.shapes), meter.tokens
    with torch.inference_mode():
        raw_start = time.perf_counter()
        for shape in shapes:
            model(input_ids=torch.randint(0, tokenizer.vocab_size, shape))
        raw_s = time.perf_counter() - raw_start
    return {"eval_wall_s": wall, "eval_tokens": tokens, "eval_forward_calls": len(shapes),
            "eval_tokens_per_s": tokens / wall, "raw_forward_s": raw_s,
            "raw_forward_tokens_per_s": tokens / raw_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default=str(ROOT / "conf" / "smollm2" / "lora.yaml"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "flow"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--validation", help=argparse.SUPPRESS)
    args = parser.parse_args()
    conf, out = Path(args.conf), Path(args.out)
    if args.one == "train":
        report(standalone_training(conf, Path(args.train), Path(args.validation), out / "standalone"))
        return 0
    if args.one == "eval":
        report(evaluation_speed(conf, Path(args.validation), out / "eval"))
        return 0

    flow = run_pipeline(conf, out / "pipeline")
    paths = ["--conf", str(conf), "--out", str(out), "--train", flow["train_path"],
             "--validation", flow["validation_path"]]
    alone = run_child(__file__, "train", paths)
    evals = run_child(__file__, "eval", paths)
    if alone is None or evals is None:
        return 1
    in_flow = flow["train_tokens"] / flow["train_runtime_s"]
    standalone = alone["train_tokens"] / alone["train_runtime_s"]
    eval_stages = flow["stages_s"].get("score_base", 0) + flow["stages_s"].get("evaluate", 0)
    record = {"bench": "flow", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "conf": str(conf), "pipeline": flow,
              "standalone": alone, "eval": evals,
              "train_tokens_per_s": {"in_flow": in_flow, "standalone": standalone},
              "train_in_flow_vs_standalone": in_flow / standalone,
              "orchestration_fraction": flow["orchestration_s"] / flow["wall_s"],
              "eval_vs_raw_forward": evals["eval_tokens_per_s"] / evals["raw_forward_tokens_per_s"]}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"pipeline {conf.name}: {flow['wall_s']:.1f} s wall; stages "
          + ", ".join(f"{k} {v:.1f} s" for k, v in flow["stages_s"].items()))
    print("| measure | value |\n|---|---:|")
    print(f"| start-up + orchestration | {flow['orchestration_s']:.1f} s = "
          f"{100 * record['orchestration_fraction']:.1f}% of {flow['wall_s']:.0f} s |")
    print(f"| training tokens/s in the flow / standalone | {in_flow:.0f} / {standalone:.0f} = "
          f"{record['train_in_flow_vs_standalone']:.3f} |")
    print(f"| train stage wall / standalone train_sft wall | {flow['stages_s'].get('train', 0):.1f} s / "
          f"{alone['wall_s']:.1f} s |")
    print(f"| eval tokens/s (base model, whole eval) / raw forward passes of the same shapes | "
          f"{evals['eval_tokens_per_s']:.0f} / {evals['raw_forward_tokens_per_s']:.0f} = "
          f"{record['eval_vs_raw_forward']:.2f} |")
    print(f"| eval wall / the same forward passes alone | {evals['eval_wall_s']:.1f} s / "
          f"{evals['raw_forward_s']:.1f} s ({evals['eval_forward_calls']} calls) |")
    print(f"| eval stages in the pipeline (score_base + evaluate) | {eval_stages:.1f} s |")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
