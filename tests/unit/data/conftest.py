"""Helpers for the data-stage tests: write small input files and build configs around them."""
import json
from pathlib import Path

import pytest


@pytest.fixture()
def write_jsonl(tmp_path):
    """write_jsonl(name, rows) -> path; rows may be dicts or raw strings (for malformed lines)."""

    def _write(name: str, rows: list) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return _write


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
