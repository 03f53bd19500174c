"""Prepared preference and feedback rows in the conversational shape TRL's preference trainers read.

The data stage writes preference rows as {"messages": prompt turns ending with a user turn, "chosen": str,
"rejected": str} and KTO rows as {"messages": prompt turns + the assistant reply, "label": bool}.
"""
from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def to_pair(row: dict) -> dict:
    """{"prompt": [...turns], "chosen": [assistant turn], "rejected": [assistant turn]}."""
    return {"prompt": row["messages"],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}]}


def to_feedback(row: dict) -> list[dict]:
    """KTO examples of one row: a labelled reply as it is, a preference pair as one good and one bad reply."""
    if "label" in row:
        return [{"prompt": row["messages"][:-1], "completion": [row["messages"][-1]], "label": bool(row["label"])}]
    pair = to_pair(row)
    return [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
            {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]


def load_pairs(path: Path) -> Dataset:
    return Dataset.from_list([to_pair(r) for r in _rows(path)])


def load_feedback(path: Path) -> Dataset:
    """Unpaired good/bad feedback; paired data is unpaired (each pair gives one desirable and one undesirable)."""
    return Dataset.from_list([example for r in _rows(path) for example in to_feedback(r)])
