"""Throughput of the full data preparation (regex PII + exact + near dedup + decontamination + validation).

    .venv/bin/python bench/bench_data.py [--rows 100000] [--shared-data ../shared/data]

Prints one JSON object: records/s end to end (including reading and writing) for the HH-RLHF
harmless-base test file (2,312 preference pairs; once cold, once warm) and for a generated instruction
set, plus per-stage seconds from the report and records per CPU-second (the machine is shared).
Target: >= 5,000 records/s on 2 cores.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.data.config import DataConfig  # noqa: E402
from tasks.data.pipeline import prepare  # noqa: E402

TOPICS = ["photosynthesis", "the French revolution", "binary search", "compound interest", "plate tectonics",
          "the immune system", "supply and demand", "recursion", "climate models", "the Roman empire"]  # fmt: skip
VERBS = ["Explain", "Summarise", "Give three facts about", "Write a short poem about", "Compare two views on"]
FILLER = ("it matters because the underlying mechanism links cause and effect in a way that is easy to test "
          "and the evidence from several independent studies points in the same direction").split()  # fmt: skip


def instruction_rows(n: int, seed: int = 0) -> list[dict]:
    """Alpaca rows with ~2% exact duplicates, ~2% near duplicates and ~3% PII, like scraped instruction data."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for i in range(n):
        r = rng.random()
        if rows and r < 0.02:
            rows.append(dict(rng.choice(rows)))
            continue
        if rows and r < 0.04:
            near = dict(rng.choice(rows))
            near["output"] = near["output"] + " Hope this helps."
            rows.append(near)
            continue
        words = rng.sample(FILLER, k=len(FILLER))[: rng.randint(15, 40)]
        answer = f"Answer {i}: " + " ".join(words) + f" ({rng.randint(0, 10**9)})."
        if r < 0.07:
            answer += rng.choice([f" Mail me at user{i}@example.com.", f" Call +1 415 555 {rng.randint(1000, 9999)}.",
                                  f" My server is 10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}."])  # fmt: skip
        rows.append({"instruction": f"{rng.choice(VERBS)} {rng.choice(TOPICS)} (case {i}).", "input": "", "output": answer})
    return rows


def run(name: str, cfg: DataConfig, work: Path) -> dict:
    """Wall-clock and CPU-time throughput: on a shared machine the CPU figure is the load-independent one."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = prepare(cfg, work / f"out-{name}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = json.loads(out.report_path.read_text())
    n = out.counts["rows_in"]
    return {"rows_in": n, "rows_kept": out.counts["rows_kept"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "records_per_s": round(n / wall), "records_per_cpu_s": round(n / cpu), "stages_s": report["timings_s"],
            "dropped": {k: v for k, v in out.counts.items() if k.startswith("dropped_")}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    shared = Path(args.shared_data)
    common = {"decontamination": {"benchmarks_dir": str(shared)}}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hh = DataConfig(sources=[{"name": "hh", "path": str(shared / "hh-rlhf/harmless-base/test.jsonl.gz"), "license": "MIT"}], on_bad_row="skip",
                        **common)  # fmt: skip
        results["hh_rlhf_cold"] = run("hh-cold", hh, work)  # first call: imports presidio, GE, datasketch
        results["hh_rlhf"] = run("hh", hh, work)
        gen = work / "instructions.jsonl"
        gen.write_text("".join(json.dumps(r) + "\n" for r in instruction_rows(args.rows)), encoding="utf-8")
        inst = DataConfig(sources=[{"name": "gen", "path": str(gen), "license": "CC0-1.0"}], **common)
        results["instructions"] = run("gen", inst, work)
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
