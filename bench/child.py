"""Run one benchmark case in a child process (so peak memory is that case's alone) and read back its result line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def report(result: dict) -> None:
    """Child side: print the result line the parent reads."""
    print("RESULT " + json.dumps(result), flush=True)


def run_child(script: str, name: str, args: list[str]) -> dict | None:
    """Parent side: `script --one NAME ARGS...`; None (and the child's stderr) when it did not report."""
    proc = subprocess.run([sys.executable, script, "--one", name, *args], capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        print(f"{name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(line[len("RESULT "):])
