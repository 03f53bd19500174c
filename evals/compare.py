"""Compare MLflow runs side by side: the params that differ, every final metric, overlaid curves.

Usage (the `make compare RUNS=...` target):
    python -m evals.compare RUN_ID [RUN_ID ...] --out DIR [--tracking-uri URI]

Only differing params are listed because runs of one sweep share hundreds of identical ones;
the table answers "what changed and what did it do". The tracking URI comes from
MLFLOW_TRACKING_URI unless given.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from evals.report import plot_curves, slug

_MISSING = "—"


def _md(value: object) -> str:
    """A value as one markdown table cell (pipes escaped, newlines flattened)."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def differing_params(params: list[dict[str, str]]) -> dict[str, list[str]]:
    """Params whose value is not the same in every run (absent counts as a value)."""
    keys = sorted(set().union(*params))
    out = {}
    for key in keys:
        values = [p.get(key, _MISSING) for p in params]
        if len(set(values)) > 1:
            out[key] = values
    return out


def compare_runs(run_ids: list[str], out_dir: Path, client=None) -> Path:
    """Write `comparison.md` and one PNG per metric with a history into `out_dir`; return the markdown path."""
    from mlflow.tracking import MlflowClient

    if len(run_ids) < 1:
        raise ValueError("compare_runs needs at least one run id")
    client = client or MlflowClient()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [client.get_run(run_id) for run_id in run_ids]
    columns = [f"{r.info.run_name or r.info.run_id[:8]} ({r.info.run_id})" for r in runs]

    params = differing_params([dict(r.data.params) for r in runs])
    metric_keys = sorted(set().union(*(r.data.metrics for r in runs)))
    metric_rows = [[key] + [r.data.metrics.get(key, _MISSING) for r in runs] for key in metric_keys]

    plots = []
    for key in metric_keys:
        series = {}
        for run, column in zip(runs, columns):
            history = client.get_metric_history(run.info.run_id, key)
            if len(history) > 1:
                series[column] = sorted((m.step, m.value) for m in history)
        if series:
            plots.append(plot_curves(series, out_dir / f"{slug(key)}.png", title=key, ylabel=key))

    parts = [
        f"# Comparison of {len(runs)} runs",
        "## Runs\n\n" + _table(["run name", "run id", "status"], [
            [r.info.run_name or "", r.info.run_id, r.info.status] for r in runs
        ]),
        "## Params that differ\n\n" + (
            _table(["param", *columns], [[k, *v] for k, v in params.items()]) if params
            else "All params are identical."
        ),
        "## Final metrics\n\n" + (_table(["metric", *columns], metric_rows) if metric_rows else "No metrics logged."),
    ]
    if plots:
        parts.append("## Metric histories\n\n" + "\n\n".join(f"![{p.stem}]({p.name})" for p in plots))
    path = out_dir / "comparison.md"
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Compare MLflow runs: differing params, final metrics, curves.")
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    parser.add_argument("--out", type=Path, required=True, help="folder for comparison.md and the PNGs")
    parser.add_argument("--tracking-uri", default=None, help="defaults to MLFLOW_TRACKING_URI")
    args = parser.parse_args(argv)
    from mlflow.tracking import MlflowClient

    path = compare_runs(args.run_ids, args.out, client=MlflowClient(tracking_uri=args.tracking_uri))
    print(path)
    return path


if __name__ == "__main__":
    main()
