"""Fine-tuning methods side by side on SmolLM2-135M-Instruct: same data, same steps, same tokens.

    .venv/bin/python bench/bench_methods.py [--methods lora,dora,qlora,ia3,prompt,full] [--steps 20]
                                            [--batch-size 4] [--max-length 256] [--data conf/data/demo_support.jsonl]

Each method runs in its own process (peak memory is per process: on CPU the peak RSS, on CUDA the peak
allocated) with the knobs of conf/smollm2/<method>.yaml, overriding only the shared budget: steps, batch,
max_length, no gradient accumulation, no gradient checkpointing, padded batches (no packing) so every method
sees exactly the same token stream in the same order. Validation loss is on the next `--val-rows` rows.
`base` is the untrained model's validation loss, for reference. Prints a markdown table; raw results go to
<out>/results.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.child import report, run_child  # noqa: E402

DEFAULT_METHODS = "base,lora,dora,qlora,ia3,prompt,full"


def split_rows(data: Path, out: Path, n_train: int, n_val: int) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    with open(data) as f:
        rows = list(itertools.islice(f, n_train + n_val))
    if len(rows) < n_train + n_val:
        raise SystemExit(f"{data} has {len(rows)} rows; need {n_train + n_val}")
    (out / "train.jsonl").write_text("".join(rows[:n_train]))
    (out / "val.jsonl").write_text("".join(rows[n_train:]))
    return out / "train.jsonl", out / "val.jsonl"


def run_one(method: str, args) -> dict:
    """Child process: train one method and report its numbers as JSON."""
    import yaml

    from tasks.model import EMBEDDED, ModelRef
    from tasks.training.config import TrainConfig
    from tasks.training.methods import load_base
    from tasks.training.sft import train_sft

    raw = yaml.safe_load((ROOT / "conf" / "smollm2" / f"{'lora' if method == 'base' else method}.yaml").read_text())
    raw = raw["train"] | dict(max_steps=args.steps, epochs=100, batch_size=args.batch_size, max_length=args.max_length,
                              grad_accum=1, gradient_checkpointing=False, packing=False, logging_steps=5,
                              save_steps=10_000)
    cfg = TrainConfig.model_validate(raw)
    base = ModelRef.of(EMBEDDED)
    out = Path(args.out) / method
    if method == "base":  # LoRA at initialisation (B = 0) computes exactly the base model: its validation loss
        from tasks.training.sft import build_trainer

        trainer = build_trainer(cfg, base, Path(base.path), Path(args.train), out, eval_path=Path(args.val))
        return {"method": "base (untrained)", "val_loss": trainer.evaluate()["eval_loss"]}
    result = train_sft(cfg, base, Path(base.path), Path(args.train), out, eval_path=Path(args.val))
    weights_mb = load_base(cfg, base).get_memory_footprint() / 2**20  # after training: not in the peak
    return {"method": method, "trainable_params": result.trainable_params, "total_params": result.total_params,
            "weights_mb": weights_mb, "peak_memory_mb": result.peak_memory_mb, "train_tokens": result.train_tokens,
            "train_runtime_s": result.train_runtime_s, "tokens_per_s": result.train_tokens / result.train_runtime_s,
            "first_loss": result.first_loss, "final_loss": result.final_loss, "val_loss": result.eval_loss,
            "learning_rate": cfg.learning_rate}


def table(results: list[dict]) -> str:
    lines = ["| method | trainable params | % of base | weights (MB) | peak memory (MB) | tokens/s | train tokens "
             "| train loss first -> last | val loss |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in results:
        if "trainable_params" not in r:
            lines.append(f"| {r['method']} | | | | | | | | {r['val_loss']:.3f} |")
            continue
        pct = 100 * r["trainable_params"] / r["total_params"]
        lines.append(f"| {r['method']} | {r['trainable_params']:,} | {pct:.3g}% | {r['weights_mb']:.0f} "
                     f"| {r['peak_memory_mb']:.0f} | {r['tokens_per_s']:.0f} | {r['train_tokens']:,} "
                     f"| {r['first_loss']:.3f} -> {r['final_loss']:.3f} | {r['val_loss']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--data", default=str(ROOT / "conf" / "data" / "demo_support.jsonl"))
    parser.add_argument("--val-rows", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "methods"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one method
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--val", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        report(run_one(args.one, args))
        return 0

    out = Path(args.out)
    train, val = split_rows(Path(args.data), out / "data", args.steps * args.batch_size, args.val_rows)
    results = []
    for method in args.methods.split(","):
        shutil.rmtree(out / method, ignore_errors=True)  # a fresh run, never a resume
        start = time.perf_counter()
        result = run_child(__file__, method, ["--steps", str(args.steps), "--batch-size", str(args.batch_size),
                                              "--max-length", str(args.max_length), "--out", str(out),
                                              "--train", str(train), "--val", str(val)])
        if result is None:
            continue
        results.append(result)
        print(f"{method}: {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"SmolLM2-135M-Instruct, {args.steps} steps x batch {args.batch_size}, max_length {args.max_length}, "
          f"{'CUDA' if _cuda() else 'CPU'}; validation: {args.val_rows} rows\n")
    print(table(results))
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
