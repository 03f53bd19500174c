"""Generate the embedded demo preference set: support replies for Stratovault, each a good reply against a worse one.

    python -m tasks.data.demo_preferences --out conf/data/demo_preferences.jsonl

The prompts and good replies are the single-turn conversations of the demo support set (tasks/data/demo.py, same
seed, so the same facts). Each worse reply is one of four kinds, in seeded rotation:
- off_topic: another conversation's reply (it ignores the question);
- rude: a dismissive line instead of help;
- leak: the good reply with an access key pasted in (data prep's PII filter redacts it, which is also a signal);
- wrong: the good reply with its numbers and one command changed (plausible but incorrect).
Then the flaws data prep must catch are planted: exact duplicate pairs, pairs whose chosen equals rejected (quarantined
with `on_bad_row: skip`), and the demo set's PII rows and contaminated MMLU row as prompts. Same seed, same bytes.
"""
from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from tasks.data import demo

SEED = 20261
KINDS = ("off_topic", "rude", "leak", "wrong")
RUDE = ("Read the manual, it's all in there.", "Not my problem, figure it out yourself.",
        "Why would you even try that? Just reinstall everything.", "Ask someone else, I'm busy.")
LEAK = " If that fails, use our admin key AKIAIOSFODNN7EXAMPLE with secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY."
SWAPS = {"restore": "prune", "prune": "restore", "backup": "unlock", "unlock": "backup"}
N_EXACT_DUPLICATES, N_SAME_REPLY = 4, 2


def wrong(reply: str) -> str | None:
    """The reply with every digit shifted and the first known subcommand swapped, or None when nothing changed."""
    out = re.sub(r"\d", lambda m: str((int(m.group()) + 3) % 10), reply)
    out = re.sub(r"stratovault (\w+)", lambda m: f"stratovault {SWAPS.get(m.group(1), m.group(1))}", out, count=1)
    return out if out != reply else None


def worse(kind: str, reply: str, others: list[str], rng: random.Random) -> str:
    if kind == "wrong" and (changed := wrong(reply)):
        return changed
    if kind == "leak":
        return reply + LEAK
    if kind == "off_topic":
        return rng.choice([o for o in others if o != reply])
    return rng.choice(RUDE)


def build(seed: int = SEED, shared_data: Path | None = None) -> tuple[list[dict], dict[str, list[int]]]:
    """Rows {"prompt": [turns], "chosen": str, "rejected": str} and the 1-based lines of each planted flaw."""
    rng = random.Random(seed)
    convs = [r["messages"] for r in demo.build(demo.SEED, shared_data)[0]]
    single = [m for m in convs if [t["role"] for t in m if t["role"] != "system"] == ["user", "assistant"]]
    unique = list({m[-1]["content"]: m for m in single}.values())  # the set's own duplicates stay out
    replies = [m[-1]["content"] for m in unique]
    rows = [{"prompt": m[:-1], "chosen": m[-1]["content"],
             "rejected": worse(KINDS[i % len(KINDS)], m[-1]["content"], replies, rng), "kind": KINDS[i % len(KINDS)]}
            for i, m in enumerate(unique)]
    rng.shuffle(rows)
    planted = [dict(r) for r in rng.sample(rows, N_EXACT_DUPLICATES)]
    same = [{**r, "rejected": r["chosen"], "kind": "same_reply"} for r in rng.sample(rows, N_SAME_REPLY)]
    for extra in planted + same:
        rows.insert(rng.randint(0, len(rows)), extra)
    flaws = {"exact_duplicate": sorted(max(i for i, r in enumerate(rows) if r == p) + 1 for p in planted),
             "same_reply": sorted(i + 1 for i, r in enumerate(rows) if r["kind"] == "same_reply")}
    return rows, flaws


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("conf/data/demo_preferences.jsonl"))
    parser.add_argument("--seed", type=int, default=SEED, help="the committed file uses the default")
    parser.add_argument("--shared-data", type=Path, default=None, help="folder holding mmlu/ (default ../shared/data)")
    args = parser.parse_args(argv)
    rows, flaws = build(args.seed, args.shared_data)
    args.out.write_text(demo.render(rows), encoding="utf-8")
    kinds = {k: sum(r["kind"] == k for r in rows) for k in (*KINDS, "same_reply")}
    print(f"wrote {len(rows)} pairs to {args.out}: {kinds}")
    for kind, lines in flaws.items():
        print(f"{kind}: {len(lines)} rows, lines {', '.join(map(str, lines))}")


if __name__ == "__main__":
    main()
