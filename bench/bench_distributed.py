"""One process against N processes (`train.distributed: ddp`) on the same global batch, side by side in one run:
LoRA SFT of SmolLM2-135M-Instruct, lora.yaml's settings, the first 96 demo rows.

    .venv/bin/python bench/bench_distributed.py [--processes 2] [--steps 12] [--out runs/bench/distributed]

`wall_s` is the whole `train_recipe` call: model load, tokenisation and training, plus, for the launched run,
`accelerate launch` and N interpreters starting. `train_s` is the trainer's own train_runtime (rank 0). On a
2-core CPU the 1-process run already uses both cores (two threads), so N processes bring no extra compute: the
table shows what DDP's coordination costs there, and that the losses agree. On N GPUs the same config divides the
step time by about N. Prints a markdown table and appends one JSON line to <out>/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_train import train_config, train_rows  # noqa: E402


def run(processes: int, args, data: Path, out: Path) -> dict:
    from tasks.model import EMBEDDED, ModelRef
    from tasks.training.launch import train_recipe

    cfg = train_config("sft", "project-default", args)
    cfg.batch_size = args.global_batch // processes
    if processes > 1:
        cfg.distributed, cfg.num_processes = "ddp", processes
    shutil.rmtree(out, ignore_errors=True)
    model = ModelRef.of(EMBEDDED)
    start = time.perf_counter()
    result = train_recipe(cfg, model, Path(model.path), data, out)
    wall = time.perf_counter() - start
    losses = [h["loss"] for h in json.loads(result.history_path.read_text()) if "loss" in h]
    return {"processes": processes, "batch_per_process": cfg.batch_size, "wall_s": round(wall, 1),
            "train_s": round(result.train_runtime_s, 1),
            "tokens_per_s": round(result.train_tokens / result.train_runtime_s, 1),
            "peak_mb_rank0": round(result.peak_memory_mb), "losses": [round(x, 4) for x in losses]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--global-batch", type=int, default=4)
    parser.add_argument("--logging-steps", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "distributed")
    args = parser.parse_args()
    data, _ = train_rows("sft", args.out, 96)
    results = [run(n, args, data, args.out / f"p{n}") for n in (1, args.processes)]
    one = results[0]
    print("| processes | batch/process | wall s | train s | tokens/s | x 1 process (train) | peak MB rank 0 | "
          "final loss |\n|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['processes']} | {r['batch_per_process']} | {r['wall_s']} | {r['train_s']} | {r['tokens_per_s']} | "
              f"{one['train_s'] / r['train_s']:.2f} | {r['peak_mb_rank0']} | {r['losses'][-1]} |")
    gap = max(abs(a - b) / abs(a) for a, b in zip(one["losses"], results[1]["losses"]))
    print(f"\nlargest relative difference between the two loss curves: {gap:.1e}")
    with open(args.out / "results.jsonl", "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "steps": args.steps, "results": results,
                            "max_loss_rel_diff": gap}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
