"""Throughput and peak memory of the full data preparation (PII + exact + near dedup + decontamination + validation).

    .venv/bin/python bench/bench_data.py [--scales 100000,1000000] [--shared-data ../shared/data]

Each case runs in its own child process, so its peak RSS is its own. Prints one JSON object:
- `hh_rlhf`: the 2,312 HH-RLHF harmless-base test pairs (fixed per-run costs dominate);
- `instructions_<n>`: a generated instruction set of n rows (~2% exact and ~2% near duplicates, ~3% PII),
  streamed to disk first; records/s end to end (reading, every filter, validation, writing; presidio's and
  great-expectations' import time reported apart, and with) and peak RSS, plus RSS growth across scales;
- `bad_line_<n>` (largest scale): the same file with a malformed line 10 rows from its end, once with
  `on_bad_row: error` (expects the file:line error and no output folder) and once with `skip` (expects
  the line quarantined and the counts to add up: rows_in = kept + dropped, files hold what counts say).
Targets: >= 5,000 records/s on 2 cores; peak RSS < 4 GB at 1M rows, growing sublinearly in rows.
"""
import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import report, run_child  # noqa: E402

TOPICS = ["photosynthesis", "the French revolution", "binary search", "compound interest", "plate tectonics",
          "the immune system", "supply and demand", "recursion", "climate models", "the Roman empire"]  # fmt: skip
VERBS = ["Explain", "Summarise", "Give three facts about", "Write a short poem about", "Compare two views on"]
FILLER = ("it matters because the underlying mechanism links cause and effect in a way that is easy to test "
          "and the evidence from several independent studies points in the same direction").split()  # fmt: skip
RECENT = 10_000  # duplicates are drawn from the last rows written, so the generator streams too


def write_instruction_rows(path: Path, n: int, seed: int = 0, bad_line_at: int | None = None) -> None:
    """Alpaca rows with ~2% exact duplicates, ~2% near duplicates and ~3% PII, like scraped instruction data."""
    rng = random.Random(seed)
    recent: list[dict] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            if i == bad_line_at:
                fh.write('{"instruction": "a row cut off mid-way", "output": \n')
                continue
            r = rng.random()
            if recent and r < 0.02:
                row = dict(rng.choice(recent))
            elif recent and r < 0.04:
                row = dict(rng.choice(recent))
                row["output"] = row["output"] + " Hope this helps."
            else:
                words = rng.sample(FILLER, k=len(FILLER))[: rng.randint(15, 40)]
                answer = f"Answer {i}: " + " ".join(words) + f" ({rng.randint(0, 10**9)})."
                if r < 0.07:
                    answer += rng.choice([f" Mail me at user{i}@example.com.", f" Call +1 415 555 {rng.randint(1000, 9999)}.",
                                          f" My server is 10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}."])  # fmt: skip
                row = {"instruction": f"{rng.choice(VERBS)} {rng.choice(TOPICS)} (case {i}).", "input": "", "output": answer}
            fh.write(json.dumps(row) + "\n")
            recent.append(row)
            if len(recent) > RECENT:
                recent.pop(rng.randrange(len(recent)))


def _lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def one(name: str, path: str, shared: str, on_bad_row: str) -> None:
    """Child: prepare one source, report records/s, peak RSS and whether the books balance on disk."""
    from tasks.data.config import DataConfig
    from tasks.data.errors import DataError
    from tasks.data.pipeline import prepare

    imports = time.perf_counter()
    import great_expectations  # noqa: F401  library start-up (~6 s), paid once per process: reported apart
    import presidio_analyzer  # noqa: F401

    imports = time.perf_counter() - imports
    license_ = "MIT" if "hh-rlhf" in path else "CC0-1.0"
    cfg = DataConfig(sources=[{"name": "src", "path": path, "license": license_}], on_bad_row=on_bad_row,
                     decontamination={"benchmarks_dir": shared})  # fmt: skip
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out_dir = Path(tempfile.mkdtemp(prefix="bench-data-")) / "out"
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        out = prepare(cfg, out_dir)
    except DataError as e:
        report({"name": name, "error": str(e)[:300], "wall_s": round(time.perf_counter() - wall, 1),
                "nothing_written": not out_dir.exists(),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})  # fmt: skip
        return
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts = out.counts
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped_"))
    on_disk = {"train": _lines(out.train_path), "validation": _lines(out.validation_path), "quarantine": _lines(out.quarantine_path)}
    books = (counts["rows_in"] == counts["rows_kept"] + dropped and on_disk["quarantine"] == dropped
             and on_disk["validation"] == counts["rows_validation"] and on_disk["train"] == counts["rows_train"]
             and counts["rows_train"] == counts["rows_kept"] - counts["rows_validation"] + counts["rows_upsampled"])  # fmt: skip
    report({"name": name, "rows_in": counts["rows_in"], "rows_kept": counts["rows_kept"], "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "records_per_s": round(counts["rows_in"] / wall), "imports_s": round(imports, 1),
            "records_per_s_with_imports": round(counts["rows_in"] / (wall + imports)),
            "records_per_cpu_s": round(counts["rows_in"] / cpu), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_after_imports_mb": round(rss_start), "books_balance": books, "on_disk": on_disk,
            "dropped": {k: v for k, v in counts.items() if k.startswith("dropped_")},
            "stages_s": json.loads(out.report_path.read_text())["timings_s"]})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="100000,1000000", help="generated-set sizes, comma-separated")
    parser.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--on-bad-row", default="error", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.path, args.shared_data, args.on_bad_row)
        return
    shared = Path(args.shared_data)
    results: dict = {}

    def case(name: str, path: Path, on_bad_row: str = "error") -> None:
        results[name] = run_child(__file__, name, ["--path", str(path), "--shared-data", str(shared), "--on-bad-row", on_bad_row])
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)

    case("hh_rlhf", shared / "hh-rlhf/harmless-base/test.jsonl.gz", "skip")
    scales = [int(s) for s in args.scales.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for n in scales:
            path = Path(tmp) / f"instructions-{n}.jsonl"
            write_instruction_rows(path, n)
            case(f"instructions_{n}", path)
            path.unlink()
        n = scales[-1]
        path = Path(tmp) / f"instructions-{n}-bad.jsonl"
        write_instruction_rows(path, n, bad_line_at=n - 10)
        case(f"bad_line_{n}_error", path)
        case(f"bad_line_{n}_skip", path, "skip")
    small, large = (results.get(f"instructions_{s}") for s in (scales[0], scales[-1]))
    if small and large and len(scales) > 1:
        results["rss_growth"] = {"rows_ratio": scales[-1] / scales[0], "peak_rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2)}
    results["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
