"""Generate the embedded labelled demo set: Stratovault support tickets, each labelled with its topic.

    python -m tasks.data.demo_tickets --out conf/data/demo_tickets.jsonl
    python -m tasks.data.demo_tickets --triage --out conf/data/demo_triage.jsonl   # the same, as chat rows

The tickets are the user turns of the demo support set (tasks/data/demo.py, same content file): one row per
(topic, ask, slot) combination, the ask formatted with the slot's fields, labelled with the topic's name. A seeded
draw from the content file's `ticket_openers`/`ticket_closers` (mostly none) wraps some of them in a greeting and a
sign-off. A topic with fewer than MIN_PER_TOPIC combinations is topped up with more copies of its combinations, each
with a greeting and a sign-off that no other row of that combination has, so every topic has at least MIN_PER_TOPIC
rows. Asks that differ in one slot word would be near duplicates for the data stage, so a row whose draw comes that
close to an earlier row (the stage's default near-dedup rule: word-trigram Jaccard and word edit fraction) draws
again: the data stage keeps every row. Then the rows are shuffled. Same seed, same bytes.
"""
from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from tasks.data import demo
from tasks.data.config import NearDedupConfig
from tasks.data.text import words

SEED = 31337
MIN_PER_TOPIC = 20
ATTEMPTS = 50  # seeded re-draws of a row's greeting and sign-off before it is declared too close to another row
NEAR = NearDedupConfig()  # the data stage's defaults: what counts as a near duplicate


class _Seen:
    """The rows drawn so far, as the data stage's near dedup sees them (words of "text: <ticket>")."""

    def __init__(self) -> None:
        self.rows: list[tuple[list[str], set[tuple[str, ...]]]] = []

    @staticmethod
    def _view(text: str) -> tuple[list[str], set[tuple[str, ...]]]:
        w, k = words(f"text: {text}"), NEAR.shingle_size
        return w, {tuple(w[i : i + k]) for i in range(len(w) - k + 1)}

    def close(self, text: str) -> bool:
        """Would near dedup drop `text` as a copy of an earlier row?"""
        w, sh = self._view(text)
        for ow, osh in self.rows:
            if len(sh & osh) / len(sh | osh) >= NEAR.threshold and \
                    Levenshtein.distance(w, ow) / max(len(w), len(ow)) <= NEAR.max_edit_fraction:
                return True
        return False

    def add(self, text: str) -> None:
        self.rows.append(self._view(text))


def _wrap(opener: str, ask: str, closer: str) -> str:
    """Greeting + ask + sign-off; an ask without final punctuation gets a full stop before the sign-off."""
    if closer and ask[-1] not in ".?!":
        ask += "."
    return f"{opener}{ask} {closer}".rstrip() if closer else f"{opener}{ask}"


def _draw(rng: random.Random, seen: _Seen, ask: str, openers: list[str], closers: list[str]) -> tuple[str, str, str]:
    """(ticket, opener, closer): the first seeded draw that is not a near duplicate of a row in `seen`."""
    for _ in range(ATTEMPTS):
        opener, closer = rng.choice(openers), rng.choice(closers)
        text = _wrap(opener, ask, closer)
        if not seen.close(text):
            seen.add(text)
            return text, opener, closer
    raise ValueError(f"no greeting and sign-off keep {ask!r} apart from the other tickets; vary its topic's asks")


def topic_tickets(rng: random.Random, content: demo.Content, topic: demo.Topic, seen: _Seen) -> list[dict[str, str]]:
    """Every (ask, slot) combination of `topic` once, then top-up copies up to MIN_PER_TOPIC rows."""
    asks, used = [], []  # per combination: the formatted ask, and the (opener, closer) pairs it has been given
    rows = []
    for ask in topic.asks:
        for slot in topic.slots:
            sid = f"{rng.getrandbits(32):08x}"  # snapshot ID, as in the chats, for slots whose fields name one
            fields = {k: v.format(sid=sid) for k, v in slot.items()} | {"sid": sid}
            text = ask.format(**fields)
            ticket, opener, closer = _draw(rng, seen, text, list(content.ticket_openers), list(content.ticket_closers))
            asks.append(text)
            used.append([(opener, closer)])
            rows.append(ticket)
    openers = [o for o in dict.fromkeys(content.ticket_openers) if o]
    closers = [c for c in dict.fromkeys(content.ticket_closers) if c]
    order = rng.sample(range(len(asks)), len(asks))
    for k in range(max(0, MIN_PER_TOPIC - len(asks))):
        i = order[k % len(order)]
        # a greeting and a sign-off no other copy of this ask has
        free_o = [o for o in openers if o not in {u[0] for u in used[i]}]
        free_c = [c for c in closers if c not in {u[1] for u in used[i]}]
        if not free_o or not free_c:
            raise ValueError(f"topic {topic.name!r}: too few ticket_openers/ticket_closers to reach {MIN_PER_TOPIC} rows")
        ticket, opener, closer = _draw(rng, seen, asks[i], free_o, free_c)
        used[i].append((opener, closer))
        rows.append(ticket)
    return [{"text": text, "label": topic.name} for text in rows]


def build(seed: int = SEED, content: demo.Content | None = None) -> list[dict[str, str]]:
    """All rows {"text": ticket, "label": topic name}, in file order."""
    content = content or demo.load_content()
    if not content.ticket_openers or not content.ticket_closers:
        raise ValueError(f"{demo.CONTENT_FILE}: ticket_openers and ticket_closers are needed for the ticket set")
    rng = random.Random(seed)
    seen = _Seen()
    rows = [row for topic in content.topics for row in topic_tickets(rng, content, topic, seen)]
    texts = Counter(r["text"] for r in rows)
    if repeated := [t for t, n in texts.items() if n > 1]:
        raise ValueError(f"tickets repeat (vary the asks or slots): {repeated[:3]}")
    rng.shuffle(rows)
    return rows


TRIAGE_SYSTEM = "Reply with the topic of the support ticket, nothing else."


def as_triage_chats(rows: list[dict[str, str]]) -> list[dict]:
    """The tickets as a generation task (continual learning's first task): the reply is the topic's name, so exact
    match is its accuracy."""
    return [{"messages": [{"role": "system", "content": TRIAGE_SYSTEM}, {"role": "user", "content": r["text"]},
                          {"role": "assistant", "content": r["label"]}]} for r in rows]


def label_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    """Rows per label, in the order labels first appear."""
    return dict(Counter(r["label"] for r in rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("conf/data/demo_tickets.jsonl"), help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=SEED, help="the committed file uses the default")
    parser.add_argument("--triage", action="store_true", help="write chat rows whose reply is the topic (SFT)")
    args = parser.parse_args(argv)
    rows = build(args.seed)
    if args.triage:
        args.out.write_text(demo.render(as_triage_chats(rows)), encoding="utf-8")
        print(f"wrote {len(rows)} triage chats to {args.out}")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(demo.render(rows), encoding="utf-8")
    counts = label_counts(rows)
    print(f"wrote {len(rows)} tickets with {len(counts)} labels to {args.out}: "
          f"{min(counts.values())}-{max(counts.values())} rows per label")
    for label, n in sorted(counts.items()):
        print(f"  {n:3d}  {label}")


if __name__ == "__main__":
    main()
