"""Peak memory of DPO's reference model, side by side on SmolLM2-135M-Instruct and the demo preference set:

    .venv/bin/python bench/bench_reference.py [--steps 3] [--batch-size 4] [--max-length 256]

- lora, adapter disabled: the base with the adapter switched off is the reference (what the pipeline does);
- lora, second copy: a separately loaded frozen copy passed as `ref_model`;
- full, frozen copy: full fine-tuning with a frozen reference copy (the pipeline's default for full weights);
- full, precomputed: reference log-probs computed once before training, no reference in memory while training.

Each setup runs in its own process; peak memory is the process's peak RSS (CPU) or peak CUDA allocation.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.child import report, run_child  # noqa: E402

SETUPS = {
    "lora, adapter disabled": ("lora", {}, False),
    "lora, second copy": ("lora", {}, True),
    "full, frozen copy": ("full", {}, False),
    "full, precomputed": ("full", {"precompute_ref_log_probs": True}, False),
}


def run_one(name: str, args) -> dict:
    from tasks.model import EMBEDDED, ModelRef
    from tasks.training.callbacks import peak_memory_mb
    from tasks.training.config import TrainConfig
    from tasks.training.dpo import train_dpo

    method, dpo, copy = SETUPS[name]
    cfg = TrainConfig.model_validate(dict(recipe="dpo", method=method, dpo=dpo, max_steps=args.steps, epochs=100,
                                          batch_size=args.batch_size, max_length=args.max_length, logging_steps=1,
                                          save_steps=10_000, learning_rate=1e-5 if method == "full" else 5e-4))
    base = ModelRef.of(EMBEDDED)
    ref = base.load_model().requires_grad_(False).eval() if copy else None
    start = time.perf_counter()
    result = train_dpo(cfg, base, Path(base.path), Path(args.train), Path(args.out) / name.replace(", ", "_"),
                       ref_model=ref)
    return {"setup": name, "peak_memory_mb": peak_memory_mb(), "wall_s": time.perf_counter() - start,
            "final_loss": result.final_loss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--data", default=str(ROOT / "conf" / "data" / "demo_preferences.jsonl"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "reference"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        report(run_one(args.one, args))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in Path(args.data).read_text().splitlines() if '"same_reply"' not in r]
    train = out / "train.jsonl"  # prepared rows: prompt turns in `messages`
    train.write_text("".join(json.dumps({"messages": (d := json.loads(r))["prompt"], "chosen": d["chosen"],
                                         "rejected": d["rejected"]}) + "\n"
                             for r in rows[:args.steps * args.batch_size]))
    results = []
    for name in SETUPS:
        result = run_child(__file__, name, ["--steps", str(args.steps), "--batch-size", str(args.batch_size),
                                            "--max-length", str(args.max_length), "--out", str(out),
                                            "--train", str(train)])
        if result is None:
            continue
        results.append(result)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"DPO reference model, SmolLM2-135M-Instruct, {args.steps} steps x {args.batch_size} pairs, "
          f"max_length {args.max_length}\n\n| setup | peak memory (MB) | wall (s) |\n|---|---:|---:|")
    for r in results:
        print(f"| {r['setup']} | {r['peak_memory_mb']:.0f} | {r['wall_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
