"""One self-contained HTML report per run: what was trained, on what, how it went, and whether it ships.

The HTML embeds its plots as base64 so it can be attached to an MLflow run or mailed as one file;
the same plots are also written as PNGs beside it for dashboards. Every user-provided string
(config values, prompts, generations) is HTML-escaped: generations are untrusted model output.
Results come first and the long configuration last; an interval drawn from fewer than
`MIN_ITEMS_FOR_CI` items is replaced by its greyed item count, since it would only look precise.
"""
from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import matplotlib

matplotlib.use("Agg")  # headless: workers have no display
import matplotlib.pyplot as plt  # noqa: E402

from evals.drift import GateVerdict  # noqa: E402
from evals.metrics import is_degenerate  # noqa: E402
from evals.stats import MIN_ITEMS_FOR_CI  # noqa: E402

Series = list[tuple[int, float]]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#117a37}.block{color:#b00020}pre{white-space:pre-wrap;margin:0;font-size:.85rem}
img{max-width:100%}tr.blocked td{background:#fde8ea}.few{color:#999}.meta{color:#555}
td.degenerate{background:#fff4e0}.flag{color:#b35c00;font-weight:bold;font-size:.8rem}
"""
_SUFFIXES = ("_ci_low", "_ci_high", "_n")


def slug(name: str) -> str:
    """A file-name-safe version of a metric or series name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "series"


def plot_curves(series: Mapping[str, Series], path: Path, *, title: str, ylabel: str) -> Path:
    """Overlay (step, value) series on one axis and save a PNG."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    try:
        for label, points in series.items():
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=label, marker="." if len(points) < 30 else None)
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def group_history(history: Mapping[str, Series]) -> dict[str, dict[str, Series]]:
    """Group series into plots: every loss on one, learning rate(s) on another, anything else alone."""
    groups: dict[str, dict[str, Series]] = {}
    for name, points in history.items():
        if not points:
            continue
        lowered = name.lower()
        if "loss" in lowered:
            key = "loss"
        elif lowered in {"lr", "learning_rate"} or "learning_rate" in lowered:
            key = "learning_rate"
        else:
            key = slug(name)
        groups.setdefault(key, {})[name] = points
    return groups


def flatten(d: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested dicts as dotted keys, so a config reads as one two-column table."""
    out: dict[str, object] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _e(value: object) -> str:
    return html.escape(_fmt(value))


def _kv_table(d: Mapping) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in flatten(d).items())
    return f"<table>{rows}</table>" if rows else "<p><em>none</em></p>"


def _num(value: float | None, sign: str = "") -> str:
    if value is None or value != value:  # NaN: a metric only one side has
        return ""
    return f"{value:{sign}.4f}" if abs(value) < 1e5 else f"{value:{sign},.0f}"  # parameter counts, tokens/s


def _interval(low: float, high: float, n: int | None, sign: str = "") -> str:
    """`[low, high]`, or the greyed item count when too few items stand behind it (n unknown: shown as is)."""
    if n is not None and n < MIN_ITEMS_FOR_CI:
        return f'<span class="few" title="interval from fewer than {MIN_ITEMS_FOR_CI} items: not shown">(n={n})</span>'
    return f"[{_num(low, sign)}, {_num(high, sign)}]"


def _header(run_id: str | None, created: datetime | date | str | None, links: Mapping[str, str] | None) -> str:
    """Run id, date and links to the run's MLflow and Prefect pages; only http(s) links become anchors."""
    when = created or datetime.now(timezone.utc)
    if isinstance(when, datetime):
        when = when.strftime("%Y-%m-%d %H:%M %Z").strip()
    parts = [f"run <code>{_e(run_id)}</code>"] if run_id else []
    parts.append(_e(when))
    for name, url in (links or {}).items():
        if urlsplit(str(url)).scheme in {"http", "https"}:
            parts.append(f'<a href="{html.escape(str(url), quote=True)}">{_e(name)}</a>')
        else:
            parts.append(f"{_e(name)}: {_e(url)}")
    return f'<p class="meta">{" &middot; ".join(parts)}</p>'


def _verdict_html(verdict: GateVerdict) -> str:
    status = '<p class="pass"><strong>PASSED</strong></p>' if verdict.passed else (
        '<p class="block"><strong>BLOCKED</strong></p>'
    )
    reasons = "".join(f"<li>{_e(r)}</li>" for r in verdict.reasons)
    return status + (f"<ul>{reasons}</ul>" if reasons else "")


def _eval_table(verdict: GateVerdict) -> str:
    pct = round(verdict.confidence * 100)
    head = (
        "<tr><th>metric</th><th>n</th><th>base</th><th>tuned</th><th>delta</th>"
        f"<th>{pct}% CI of delta</th><th>max drop</th><th>blocked</th></tr>"
    )
    body = ""
    for r in verdict.rows:
        threshold = "not gated" if r.threshold is None else f"{r.threshold:.4f}"
        body += (
            f'<tr class="{"blocked" if r.blocked else ""}"><td>{_e(r.metric)}</td><td class="num">{r.n}</td>'
            f'<td class="num">{r.base_mean:.4f}</td><td class="num">{r.tuned_mean:.4f}</td>'
            f'<td class="num">{r.delta:+.4f}</td><td class="num">{_interval(r.ci_low, r.ci_high, r.n, "+")}</td>'
            f'<td class="num">{threshold}</td><td>{"yes" if r.blocked else "no"}</td></tr>'
        )
    return f"<table>{head}{body}</table>"


def _split_scores(scores: Mapping[str, float]) -> dict[str, tuple[float, float | None, float | None, int | None]]:
    """metric -> (value, ci_low, ci_high, n), folding the `_ci_low` / `_ci_high` / `_n` keys (`evals.stats.ci_fields`)
    into the metric they qualify; a suffixed key whose metric is absent stays a metric of its own."""
    out = {}
    for key, value in scores.items():
        if any(key.endswith(x) and key[:-len(x)] in scores for x in _SUFFIXES):
            continue
        n = scores.get(f"{key}_n")
        out[key] = (value, scores.get(f"{key}_ci_low"), scores.get(f"{key}_ci_high"), None if n is None else int(n))
    return out


def _score_cell(entry: tuple | None) -> str:
    if entry is None:
        return '<td class="num"></td>'
    value, low, high, n = entry
    ci = "" if low is None or high is None else " " + _interval(low, high, n)
    return f'<td class="num">{_num(value)}{ci}</td>'


def _scores_table(base: Mapping[str, float], tuned: Mapping[str, float], confidence: float) -> str:
    """Each model's own means (not paired deltas), with their intervals where the evaluation computed one."""
    b, t = _split_scores(base), _split_scores(tuned)
    if not b and not t:
        return "<p><em>none</em></p>"
    rows = ""
    for metric in sorted(b.keys() | t.keys()):
        n = next((e[3] for e in (t.get(metric), b.get(metric)) if e and e[3] is not None), None)
        rows += (f'<tr><td>{_e(metric)}</td><td class="num">{"" if n is None else n}</td>'
                 f"{_score_cell(b.get(metric))}{_score_cell(t.get(metric))}</tr>")
    pct = round(confidence * 100)
    head = f"<tr><th>metric</th><th>n</th><th>base [{pct}% CI]</th><th>tuned [{pct}% CI]</th></tr>"
    return f"<table>{head}{rows}</table>"


def _reply_cell(text: str, looping: bool) -> str:
    if looping:
        return f'<td class="degenerate"><span class="flag">repetitive</span><pre>{_e(text)}</pre></td>'
    return f"<td><pre>{_e(text)}</pre></td>"


def _samples_table(samples: list[dict]) -> str:
    """Prompts with both replies; a looping reply (`evals.metrics.is_degenerate`) is flagged and counted, since
    reference metrics only show it as one low score among others."""
    if not samples:
        return "<p><em>no samples</em></p>"
    rows, flagged = "", {"base": 0, "tuned": 0}
    for s in samples:
        rows += f"<tr><td><pre>{_e(s.get('prompt', ''))}</pre></td>"
        for side in flagged:
            text = str(s.get(side) or "")
            looping = bool(text) and is_degenerate(text)
            flagged[side] += looping
            rows += _reply_cell(text, looping)
        rows += "</tr>"
    note = (f"<p>Repetitive replies: base {flagged['base']} of {len(samples)}, tuned {flagged['tuned']} of "
            f"{len(samples)}.</p>" if any(flagged.values()) else "")
    return f"{note}<table><tr><th>prompt</th><th>base</th><th>tuned</th></tr>{rows}</table>"


def write_plots(out_dir: Path, history: Mapping[str, Series]) -> list[Path]:
    """One PNG per plot group (see `group_history`), written into `out_dir`."""
    paths = []
    for key, series in group_history(history).items():
        ylabel = {"loss": "loss", "learning_rate": "learning rate"}.get(key, key)
        paths.append(plot_curves(series, out_dir / f"{key}.png", title=ylabel, ylabel=ylabel))
    return paths


def write_report(
    out_dir: Path,
    *,
    config: dict,
    data_counts: dict,
    history: dict[str, Series],
    verdict: GateVerdict,
    samples: list[dict],
    extra_tables: dict[str, dict] | None = None,
    title: str = "tuneforge run report",
    base_scores: Mapping[str, float] | None = None,
    tuned_scores: Mapping[str, float] | None = None,
    run_id: str | None = None,
    created: datetime | date | str | None = None,
    links: Mapping[str, str] | None = None,
) -> Path:
    """Write `report.html` plus its PNG plots into `out_dir`; return the HTML path.

    `base_scores` / `tuned_scores` are the evaluation's flat means (`EvalResult.base` / `.tuned`), shown with their
    intervals; `links` maps a label to a URL (flows.run.run_links); `created` defaults to
    now (UTC).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = ""
    for png in write_plots(out_dir, history):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        images += f'<figure><img alt="{_e(png.stem)}" src="data:image/png;base64,{data}"></figure>'
    extras = "".join(f"<h3>{_e(name)}</h3>{_kv_table(table)}" for name, table in (extra_tables or {}).items())
    scores = (f"<h2>Scores</h2>{_scores_table(base_scores or {}, tuned_scores or {}, verdict.confidence)}"
              if base_scores or tuned_scores else "")
    body = (
        f"<h1>{_e(title)}</h1>{_header(run_id, created, links)}"
        f"<h2>Drift gate</h2>{_verdict_html(verdict)}"
        f"<h2>Evaluation</h2>{_eval_table(verdict)}"
        + scores
        + (f"<h2>Additional results</h2>{extras}" if extras else "")
        + f"<h2>Sample generations</h2>{_samples_table(samples)}"
        f"<h2>Training curves</h2>{images or '<p><em>no history logged</em></p>'}"
        f"<h2>Data preparation</h2>{_kv_table(data_counts)}"
        f"<h2>Configuration</h2>{_kv_table(config)}"
    )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
