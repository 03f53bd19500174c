"""Model card for a packaged adapter: what it is, what it was trained on, how it scored, whether it shipped."""
from __future__ import annotations

from pathlib import Path


def write_model_card(out: Path, *, name: str, base_model: str, method: str, config: dict, data: dict,
                     evaluation: dict, tokenizer_added: list[str]) -> Path:
    verdict = evaluation["verdict"]
    rows = "\n".join(
        f"| {r['metric']} | {r['base_mean']:.4f} | {r['tuned_mean']:.4f} | {r['delta']:+.4f} | "
        f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {'blocked' if r['blocked'] else 'ok'} |"
        for r in verdict["rows"]
    )
    other = "\n".join(
        f"| {k} | {v:.4f} | {evaluation['tuned'].get(k, float('nan')):.4f} |"
        for k, v in sorted(evaluation["base"].items()) if k not in {r["metric"] for r in verdict["rows"]}
    )
    licenses = "\n".join(f"- `{src}`: {lic}" for src, lic in sorted(data["licenses"].items()))
    counts = "\n".join(f"- {k}: {v}" for k, v in sorted(data["counts"].items()))
    text = f"""---
base_model: {base_model}
library_name: peft
tags: [tuneforge, {method}]
---
# {name}

A **{method}** adapter for `{base_model}`, trained by the tuneforge `finetune` flow.

## Intended use
Domain assistant for the data it was tuned on. It inherits the base model's limits (a small model: it
can be wrong with confidence); check outputs before acting on them. Not for medical, legal or
financial advice.

## Data
- digest (sha256 of the prepared rows): `{data['digest']}`
- licenses:
{licenses}
- row accounting:
{counts}

## Evaluation (base vs tuned, same items)
Drift gate: **{'PASSED' if verdict['passed'] else 'FAILED'}** ({int(verdict['confidence'] * 100)}% paired bootstrap intervals)

| metric | base | tuned | delta | CI | gate |
|---|---|---|---|---|---|
{rows}

| other metric | base | tuned |
|---|---|---|
{other}

{chr(10).join('- ' + r for r in verdict['reasons'])}

## Tokenizer
{('Added tokens: ' + ', '.join(f'`{t}`' for t in tokenizer_added)) if tokenizer_added else 'Unchanged from the base model.'}

## Training configuration
```json
{__import__('json').dumps(config, indent=1)}
```
"""
    out.write_text(text)
    return out
