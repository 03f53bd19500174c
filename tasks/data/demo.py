"""Generate the embedded demo data set: support chats about Stratovault, a fictional self-hosted backup product.

    python -m tasks.data.demo --out conf/data/demo_support.jsonl

Rows are composed, not sampled from a model: each topic crosses user phrasings with slot values (an OS, a cron
time, an error code) and builds the answer from one of the topic's framings of the slot's facts plus seeded extra
tips, so facts stay consistent across rows (same flags, defaults and SVX error codes everywhere). A similarity
ceiling keeps rows of one topic from becoming accidental near duplicates. Then the deliberate flaws that
conf/data/README.md counts are planted at seeded positions: exact and near duplicates, PII in user turns and one
verbatim MMLU test question. Same seed, same bytes. The content (topics, phrasings, answers, the hand-written PII
and contamination rows) lives in conf/data/demo_topics.yml; this module holds only the generation logic.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

SEED = 11974
CONTENT_FILE = Path(__file__).resolve().parents[2] / "conf" / "data" / "demo_topics.yml"
MIN_WORDS, MAX_WORDS = 40, 150  # assistant answer length
MAX_SIMILARITY = 0.5  # word-trigram Jaccard ceiling between two rows of one topic (near duplicates score >= 0.9)
N_SYSTEM = 36  # rows that open with a system message
N_EXACT_DUPLICATES = 8
NEAR_DUPLICATE_MODES = ("lowercase", "whitespace", "punctuation", "word_user", "word_assistant", "sentence_case")
MMLU_CSV = Path("mmlu/test/high_school_geography_test.csv")  # under the shared data folder
MMLU_ROW = 1
# Row MMLU_ROW of that file (MMLU, MIT licensed), used when the file is absent so the output is the same either way.
MMLU_FALLBACK = (
    "The tendency for a population to continue to grow long after replacement fertility has been achieved is called",
    "zero population growth.", "rapid growth rate.", "homeostatic plateau.", "demographic momentum.", "D",
)


@dataclass(frozen=True)
class Topic:
    """One support topic. Each slot is used up to min(len(asks), len(cores)) times, each time with another ask and
    another framing; `n` rows are drawn round-robin over the slots."""

    name: str
    n: int
    asks: list[str]  # user phrasings, formatted with the slot's fields
    slots: list[dict[str, str]]
    cores: list[str]  # answer framings, formatted with the slot's fields (plus `sid`, a random snapshot ID)
    tips: list[str]  # extra sentences; rows of one slot get different ones
    follow: tuple[tuple[str, str], ...] = ()  # (follow-up question, answer); each used once as a second turn


@dataclass(frozen=True)
class Content:
    """Everything conf/data/demo_topics.yml holds, typed."""

    openers: tuple[str, ...]  # prepended to answers; empty strings weight "no opener"
    closers: tuple[str, ...]  # appended to answers; empty strings weight "no closer"
    system_prompts: tuple[str, ...]  # cycled over the rows that get a system message
    topics: tuple[Topic, ...]
    pii_rows: tuple[tuple[str, str], ...]  # (user turn with fake but well-formed PII, assistant answer)
    contamination_user: str  # formatted with the MMLU question and its four options
    contamination_answer: str  # formatted with `letter` and `text` of the right option
    # for the labelled ticket set (tasks/data/demo_tickets.py), not used here: a user's greeting and sign-off
    # around a ticket (empty strings weight "none")
    ticket_openers: tuple[str, ...] = ()
    ticket_closers: tuple[str, ...] = ()


def load_content(path: Path = CONTENT_FILE) -> Content:
    """Read and check the content file; a missing file or key is an error that names it."""
    if not path.is_file():
        raise FileNotFoundError(f"demo content file not found: {path} (it ships in the repository's conf/data/)")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        topics = tuple(Topic(name=t["name"], n=t["n"], asks=t["asks"], slots=t["slots"], cores=t["cores"],
                             tips=t["tips"], follow=tuple((f["question"], f["answer"]) for f in t.get("follow", ())))
                       for t in raw["topics"])
        return Content(openers=tuple(raw["openers"]), closers=tuple(raw["closers"]),
                       system_prompts=tuple(raw["system_prompts"]), topics=topics,
                       pii_rows=tuple((r["user"], r["assistant"]) for r in raw["pii_rows"]),
                       contamination_user=raw["contamination"]["user"],
                       contamination_answer=raw["contamination"]["assistant"],
                       ticket_openers=tuple(raw.get("ticket_openers", ())),
                       ticket_closers=tuple(raw.get("ticket_closers", ())))
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: malformed demo content ({type(err).__name__}: {err})") from None


# One-word substitutions for near duplicates: the first pair whose word occurs in the turn is applied once.
WORD_SWAPS = (("my", "our"), ("our", "my"), ("the", "a"), ("run", "execute"), ("usually", "typically"), ("I", "we"))
ATTEMPTS = 50  # seeded re-draws of tips, opener and closer before a row is declared too similar to its topic


def default_shared_data() -> Path:
    """The reference data beside the project (`../shared/data`), or $TUNEFORGE_SHARED_DATA."""
    return Path(os.environ.get("TUNEFORGE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def read_mmlu_item(shared_data: Path | None = None) -> tuple[str, ...]:
    """Row MMLU_ROW of the MMLU geography test CSV (question, A, B, C, D, answer), or the copy in MMLU_FALLBACK."""
    path = (shared_data or default_shared_data()) / MMLU_CSV
    if not path.is_file():
        return MMLU_FALLBACK
    with path.open(newline="", encoding="utf-8") as f:
        return tuple(list(csv.reader(f))[MMLU_ROW])


def shingles(text: str) -> set[tuple[str, ...]]:
    """Word trigrams of the lower-cased text, the unit of MAX_SIMILARITY."""
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _words(parts: list[str]) -> int:
    return sum(len(p.split()) for p in parts)


def compose_answer(rng: random.Random, content: Content, core: str, tips: list[str],
                   avoid: set[str]) -> tuple[str, list[str]]:
    """Opener + core + 0-2 tips (more while under MIN_WORDS; tips in `avoid` last) + maybe a closer; and the tips."""
    fresh, stale = [t for t in tips if t not in avoid], [t for t in tips if t in avoid]
    rng.shuffle(fresh)
    rng.shuffle(stale)
    want = rng.choice((0, 1, 1, 2))
    parts, used = [rng.choice(content.openers) + core], []
    for tip in fresh + stale:
        if len(used) >= want and _words(parts) >= MIN_WORDS:
            break
        if _words(parts + [tip]) <= MAX_WORDS:
            parts.append(tip)
            used.append(tip)
    closer = rng.choice(content.closers)
    if closer and _words(parts + [closer]) <= MAX_WORDS:
        parts.append(closer)
    return " ".join(parts), used


def draw_topic(rng: random.Random, content: Content, topic: Topic) -> list[list[dict[str, str]]]:
    """`topic.n` single-turn rows, round-robin over the slots: each use of a slot takes another ask and framing."""
    uses = min(len(topic.asks), len(topic.cores))
    if topic.n > uses * len(topic.slots):
        raise ValueError(f"topic asks for {topic.n} rows but has only {uses} x {len(topic.slots)}: {topic.name!r}")
    order = rng.sample(range(len(topic.slots)), len(topic.slots))
    asks = {s: rng.sample(topic.asks, uses) for s in order}
    used_tips: dict[int, set[str]] = {s: set() for s in order}
    rows, seen = [], []
    for use in range(uses):
        for rank, s in enumerate(order):
            if len(rows) == topic.n:
                return rows
            sid = f"{rng.getrandbits(32):08x}"
            fields = {k: v.format(sid=sid) for k, v in topic.slots[s].items()} | {"sid": sid}
            user = asks[s][use].format(**fields)
            core = topic.cores[(rank + use) % len(topic.cores)].format(**fields)
            tips = [t.format(**fields) for t in topic.tips]
            for _ in range(ATTEMPTS):
                answer, used = compose_answer(rng, content, core, tips, used_tips[s])
                trigrams = shingles(f"{user} {answer}")
                if all(jaccard(trigrams, other) < MAX_SIMILARITY for other in seen):
                    break
            else:
                raise ValueError(f"no draw keeps {user!r} under MAX_SIMILARITY; vary its topic's content")
            used_tips[s].update(used)
            seen.append(trigrams)
            rows.append([_msg("user", user), _msg("assistant", answer)])
    return rows


def topic_rows(rng: random.Random, content: Content) -> list[list[dict[str, str]]]:
    """Every topic's rows; one row per follow-up gets a second turn, N_SYSTEM rows a system message."""
    rows = []
    for topic in content.topics:
        drawn = draw_topic(rng, content, topic)
        for row, (question, answer) in zip(rng.sample(drawn, len(topic.follow)), topic.follow, strict=True):
            row += [_msg("user", question), _msg("assistant", answer)]
        rows += drawn
    for k, i in enumerate(sorted(rng.sample(range(len(rows)), N_SYSTEM))):
        rows[i].insert(0, _msg("system", content.system_prompts[k % len(content.system_prompts)]))
    return rows


def contamination_row(content: Content, mmlu: tuple[str, ...]) -> list[dict[str, str]]:
    question, *choices, letter = mmlu
    answer = content.contamination_answer.format(letter=letter, text=choices["ABCD".index(letter)])
    return [_msg("user", content.contamination_user.format(question, *choices)), _msg("assistant", answer)]


def near_duplicate(messages: list[dict[str, str]], mode: str) -> list[dict[str, str]] | None:
    """A copy of `messages` changed only in case, whitespace, punctuation or one word; None if `mode` cannot apply."""
    out = copy.deepcopy(messages)
    user = next(m for m in out if m["role"] == "user")
    assistant = next(m for m in out if m["role"] == "assistant")
    if mode == "lowercase":
        user["content"] = user["content"].lower()
    elif mode == "whitespace":
        assistant["content"] = assistant["content"].replace(". ", ".  ") + "\n"
    elif mode == "punctuation":
        user["content"] = re.sub(r"[?.,!:']", "", user["content"])
    elif mode == "sentence_case":
        user["content"] = "  " + user["content"][0].swapcase() + user["content"][1:]
    else:
        turn = user if mode == "word_user" else assistant
        swap = next(((old, new) for old, new in WORD_SWAPS if re.search(rf"\b{old}\b", turn["content"])), None)
        if swap is None:
            return None
        turn["content"] = re.sub(rf"\b{swap[0]}\b", swap[1], turn["content"], count=1)
    return None if out == messages else out


def build(seed: int = SEED, shared_data: Path | None = None) -> tuple[list[dict], dict[str, list[int]]]:
    """All rows in file order, and the 1-based line numbers of each kind of deliberate flaw."""
    content = load_content()
    rng = random.Random(seed)
    pii = [[_msg("user", u), _msg("assistant", a)] for u, a in content.pii_rows]
    contaminated = contamination_row(content, read_mmlu_item(shared_data))
    rows = topic_rows(rng, content) + pii + [contaminated]
    rng.shuffle(rows)
    clean = [i for i, r in enumerate(rows) if r is not contaminated and not any(r is p for p in pii)]
    order = rng.sample(clean, len(clean))  # duplicate sources in seeded order: exact ones first, then one per mode
    copies = [(rows[i], copy.deepcopy(rows[i]), "exact_duplicate") for i in order[:N_EXACT_DUPLICATES]]
    candidates = iter(order[N_EXACT_DUPLICATES:])
    for mode in NEAR_DUPLICATE_MODES:
        source, variant = next((rows[i], v) for i in candidates if (v := near_duplicate(rows[i], mode)) is not None)
        copies.append((source, variant, "near_duplicate"))
    for source, duplicate, _ in copies:  # each copy lands somewhere after its source
        at = next(k for k, r in enumerate(rows) if r is source)
        rows.insert(rng.randint(at + 1, len(rows)), duplicate)
    kinds = [(d, kind) for _, d, kind in copies] + [(p, "pii") for p in pii] + [(contaminated, "contamination")]
    flaws = {kind: sorted(k + 1 for k, r in enumerate(rows) if any(r is d for d, kd in kinds if kd == kind))
             for kind in ("exact_duplicate", "near_duplicate", "pii", "contamination")}
    return [{"messages": m} for m in rows], flaws


def render(rows: list[dict]) -> str:
    """The JSONL text: one compact JSON object a line."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("conf/data/demo_support.jsonl"), help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=SEED, help="the committed file uses the default")
    parser.add_argument("--shared-data", type=Path, default=None, help="folder holding mmlu/ (default ../shared/data)")
    args = parser.parse_args(argv)
    rows, flaws = build(args.seed, args.shared_data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.out}")
    for kind, lines in flaws.items():
        print(f"{kind}: {len(lines)} rows, lines {', '.join(map(str, lines))}")


if __name__ == "__main__":
    main()
