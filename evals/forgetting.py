"""Continual learning's comparison across the stages of a chain: for each stage that learned a new task, how much
of the previous one (and of MMLU/TruthfulQA) it kept, as paired deltas (after - before) with their intervals."""
from __future__ import annotations

import json
from pathlib import Path

# metric -> what a reader calls it; every one is higher-is-better, so a negative delta is forgetting
METRICS = {"prev_task_accuracy": "task A accuracy", "prev_task_loglik": "task A log-likelihood / token",
           "mmlu_cloze": "MMLU (cloze)", "mmlu": "MMLU", "truthfulqa_mc2": "TruthfulQA MC2",
           "truthfulqa_mc1": "TruthfulQA MC1"}


def forgetting_rows(stages: dict[str, dict], strategies: dict[str, str]) -> list[dict]:
    """One row per continual stage: its strategy, the new task's perplexity, and each metric's before/after/delta."""
    rows = []
    for name, result in stages.items():
        if name not in strategies:
            continue
        row = {"stage": name, "strategy": strategies[name],
               "new_task_perplexity": result["eval"].get("perplexity"),
               "task_A_perplexity_after": result["eval"].get("prev_task_perplexity")}
        for metric in METRICS:
            if d := result.get("deltas", {}).get(metric):
                row[metric] = d
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    metrics = [m for m in METRICS if any(m in r for r in rows)]
    head = ["stage", "strategy", "new-task perplexity", "task A perplexity after"] + [METRICS[m] for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["stage"], r["strategy"], _num(r["new_task_perplexity"]), _num(r["task_A_perplexity_after"])]
        cells += [(f"{r[m]['base']:.3f} -> {r[m]['tuned']:.3f} ({r[m]['delta']:+.3f} "
                   f"[{r[m]['ci_low']:+.3f}, {r[m]['ci_high']:+.3f}])") if m in r else "" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(x) -> str:
    return "" if x is None else f"{x:.3f}"


def plot(rows: list[dict], path: Path) -> Path:
    """One panel per metric: each strategy's delta (after - before) with its interval; below 0 = forgotten."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(m in r for r in rows)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        have = [r for r in rows if m in r]
        x = range(len(have))
        deltas = [r[m]["delta"] for r in have]
        err = [[r[m]["delta"] - r[m]["ci_low"] for r in have], [r[m]["ci_high"] - r[m]["delta"] for r in have]]
        ax.bar(x, deltas, yerr=err, capsize=4, color=["#c0392b" if d < 0 else "#27ae60" for d in deltas])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(list(x), [r["strategy"] for r in have])
        ax.set_title(f"{METRICS[m]}: after - before", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(rows: list[dict], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "forgetting.json").write_text(json.dumps(rows, indent=1))
    (out_dir / "forgetting.md").write_text(markdown(rows) + "\n")
    return [out_dir / "forgetting.json", out_dir / "forgetting.md", plot(rows, out_dir / "forgetting.png")]
