"""The end of a run on the terminal: what a flow returned, as tables a person reads instead of a Python dict.

A finetune or merge run: the gate's verdict and the eval table (base vs tuned, delta and its interval), the
registered version and its aliases, where the package and the report are, and links to the MLflow and Prefect runs.
A chain: one such block per stage. Anything else (best-of-N, a future flow): its keys and values, lists of rows as
tables.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from evals.stats import MIN_ITEMS_FOR_CI

RULE = "─" * 78


def render(result: Mapping) -> str:
    if "stages" in result and isinstance(result["stages"], Mapping):
        return _chain(result)
    if "deltas" in result:
        return _finetune(result)
    return _generic(result)


def _finetune(result: Mapping, title: str = "Run finished") -> str:
    lines = [RULE, f"{title}: drift gate {result.get('verdict', 'passed')}", "", _eval_table(result), ""]
    lines += _key_values(_outputs(result))
    return "\n".join(lines + [RULE])


def _outputs(result: Mapping) -> list[tuple[str, object]]:
    """Where things landed and the links, in the order a person looks for them."""
    links = result.get("links") or {}
    rows: list[tuple[str, object]] = []
    if result.get("final_loss") is not None:
        rows.append(("final loss", result["final_loss"]))
    if result.get("registered_version") is not None:
        aliases = "".join(f" @{a}" for a in result.get("aliases") or [])
        rows.append(("registered", f"version {result['registered_version']}{aliases}"))
    rows += [(label, result[key]) for key, label in (("package", "package"), ("report", "report"),
                                                     ("run_dir", "run folder")) if result.get(key)]
    rows.append(("MLflow run", links.get("mlflow") or result.get("mlflow_run_id")))
    if links.get("prefect"):
        rows.append(("Prefect run", links["prefect"]))
    return rows


def _eval_table(result: Mapping) -> str:
    """Every gated metric with base, tuned, delta and the delta's interval; then the other metrics (base and delta
    where the base was scored too)."""
    deltas: Mapping = result.get("deltas") or {}
    rows = [[metric, fmt(d.get("base")), fmt(d.get("tuned")), fmt(d.get("delta"), signed=True), _interval(d)]
            for metric, d in deltas.items()]
    base: Mapping = result.get("base") or {}
    rows += [[metric, fmt(base.get(metric)) if metric in base else "", fmt(value),
              fmt(value - base[metric], signed=True) if isinstance(base.get(metric), (int, float)) else "", ""]
             for metric, value in (result.get("eval") or {}).items()
             if metric not in deltas and not _is_interval_part(metric)]
    return table(["metric", "base", "tuned", "delta", "interval"], rows, right=(1, 2, 3))


def _interval(d: Mapping) -> str:
    """The delta's interval; from fewer than MIN_ITEMS_FOR_CI items only the count (such an interval means little)."""
    if d.get("n") is not None and d["n"] < MIN_ITEMS_FOR_CI:
        return f"(n={d['n']})"
    return f"[{fmt(d.get('ci_low'), signed=True)}, {fmt(d.get('ci_high'), signed=True)}]"


def _is_interval_part(metric: str) -> bool:
    return metric.endswith(("_ci_low", "_ci_high", "_n"))


def _chain(result: Mapping) -> str:
    blocks = [_finetune(stage, title=f"Stage {name}") if "deltas" in stage else _generic(stage, title=f"Stage {name}")
              for name, stage in result["stages"].items()]
    rest = {k: v for k, v in result.items() if k != "stages"}
    return "\n".join(blocks + [_generic(rest, title=f"Chain finished: {result.get('verdict', 'done')}")])


def _generic(result: Mapping, title: str = "Run finished") -> str:
    lines = [RULE, title, ""]
    scalars = [(k, v) for k, v in result.items() if not _is_rows(v)]
    lines += _key_values([(k, _flat(v)) for k, v in scalars if k != "links"])
    for label, url in (result.get("links") or {}).items():
        lines += _key_values([(f"{label} run", url)])
    for key, rows in result.items():
        if _is_rows(rows) and rows:
            headers = list(dict.fromkeys(k for row in rows for k in row))
            lines += ["", f"{key}:", table(headers, [[fmt(row.get(h)) for h in headers] for row in rows],
                                            right=tuple(range(len(headers))))]
    return "\n".join(lines + [RULE])


def _is_rows(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and bool(value) \
        and all(isinstance(v, Mapping) for v in value)


def _flat(value) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return fmt(value)


def _key_values(rows: list[tuple[str, object]]) -> list[str]:
    width = max((len(k) for k, _ in rows), default=0)
    return [f"{k:<{width}}  {fmt(v)}" for k, v in rows]


def fmt(value, signed: bool = False) -> str:
    """Numbers rounded for reading: 4 decimals below 10, 2 below 100, 1 above (signed: with + or -); None as a dash;
    everything else as str."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    if not math.isfinite(value):
        return str(value)
    decimals = 4 if abs(value) < 10 else 2 if abs(value) < 100 else 1
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def table(headers: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> str:
    """A plain-text table; columns in `right` are right-aligned (numbers)."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]

    def line(cells) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line("─" * w for w in widths), *(line(r) for r in rows)])
