"""The embedded demo data set: deterministic, committed file up to date, and exactly the flaws its data card lists.

The flaw checks detect each flaw from the file with their own code (they do not trust the generator's
report), compare the result with the card's tables, and check that nothing outside the listed lines trips
the same detectors.
"""
import csv
import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

from tasks.data import demo

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "conf" / "data" / "demo_support.jsonl"
CARD = ROOT / "conf" / "data" / "README.md"

PII_PATTERNS = {
    "email": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    "phone": r"\+\d{1,3}[\s(]+\d[\d\s()-]{6,}\d",
    "credit_card": r"\b(?:\d[ -]?){12,18}\d\b",  # counted only if Luhn-valid
    "ipv4": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
    "api_key": r"\b(?:sk-(?:live|test)-[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16})\b",
}


def _luhn(number: str) -> bool:
    digits = [int(d) for d in re.sub(r"\D", "", number)][::-1]
    return sum(d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d) for i, d in enumerate(digits)) % 10 == 0


def _pii_kinds(text: str) -> set[str]:
    found = {kind for kind, pattern in PII_PATTERNS.items() if kind != "credit_card" and re.search(pattern, text)}
    if any(_luhn(m) for m in re.findall(PII_PATTERNS["credit_card"], text)):
        found.add("credit_card")
    return found


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _row_text(row: dict) -> str:
    return " ".join(m["content"] for m in row["messages"])


def _lines(cell: str) -> list[int]:
    return [int(x) for x in cell.split(",")]


@pytest.fixture(scope="module")
def built() -> tuple[list[dict], dict[str, list[int]]]:
    return demo.build()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def card() -> dict[str, list[str]]:
    """Every markdown table row of the data card, keyed by its first cell."""
    tables = {}
    for line in CARD.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            tables[cells[0]] = cells[1:]
    return tables


@pytest.fixture(scope="module")
def duplicate_lines(rows) -> tuple[list[int], list[int]]:
    """(exact, near): later lines identical to an earlier one; later lines of non-identical pairs with Jaccard >= 0.8."""
    raw = DATA.read_text(encoding="utf-8").splitlines()
    exact = [i + 1 for i, line in enumerate(raw) if line in raw[:i]]
    grams = [_ngrams(_words(_row_text(r)), 3) for r in rows]
    near = sorted({j + 1 for i, j in itertools.combinations(range(len(rows)), 2)
                   if raw[i] != raw[j] and len(grams[i] & grams[j]) / len(grams[i] | grams[j]) >= 0.8})
    return exact, near


def test_generation_is_deterministic(built):
    again_rows, again_flaws = demo.build()
    assert demo.render(again_rows) == demo.render(built[0])
    assert again_flaws == built[1]
    assert demo.render(demo.build(seed=demo.SEED + 1)[0]) != demo.render(built[0])


def test_committed_file_equals_fresh_generation(built, tmp_path):
    assert DATA.read_text(encoding="utf-8") == demo.render(built[0])
    demo.main(["--out", str(tmp_path / "demo.jsonl")])  # the CLI writes the same bytes
    assert (tmp_path / "demo.jsonl").read_bytes() == DATA.read_bytes()


def test_output_does_not_depend_on_the_mmlu_file_being_present(built, tmp_path):
    assert demo.render(demo.build(shared_data=tmp_path)[0]) == demo.render(built[0])  # empty folder: fallback


def test_mmlu_fallback_is_the_real_question(shared_data):
    assert demo.read_mmlu_item(shared_data) == demo.MMLU_FALLBACK


def test_card_front_matter_declares_apache_license():
    front = CARD.read_text(encoding="utf-8").split("---\n")[1]
    assert yaml.safe_load(front)["license"] == "apache-2.0"


def test_rows_are_well_formed_chats(rows, card):
    assert len(rows) == 374 == int(card["rows"][0])
    for row in rows:
        assert list(row) == ["messages"]
        roles = [m["role"] for m in row["messages"]]
        body = roles[1:] if roles[0] == "system" else roles
        assert body == ["user", "assistant"] * (len(body) // 2) and len(body) >= 2, roles
        assert all(set(m) == {"role", "content"} and m["content"].strip() for m in row["messages"])
        assert all(40 <= len(m["content"].split()) <= 150 for m in row["messages"] if m["role"] == "assistant")


def test_turn_mix_among_unique_rows(rows, card, duplicate_lines):
    flagged = set(duplicate_lines[0]) | set(duplicate_lines[1])
    unique = [r for i, r in enumerate(rows, 1) if i not in flagged]
    assert len(unique) == 360 == int(card["unique_rows"][0])
    multi = sum(sum(m["role"] == "user" for m in r["messages"]) == 2 for r in unique)
    system = sum(r["messages"][0]["role"] == "system" for r in unique)
    assert (multi, system) == (36, 36) == (int(card["multi_turn"][0]), int(card["system_message"][0]))


def test_exact_duplicates_match_card(duplicate_lines, card):
    exact, _ = duplicate_lines
    assert len(exact) == 8 == int(card["exact_duplicate"][0])
    assert exact == _lines(card["exact_duplicate"][1])


def test_near_duplicates_match_card_and_nothing_else_is_close(rows, duplicate_lines, card):
    _, near = duplicate_lines
    assert len(near) == 6 == int(card["near_duplicate"][0])
    assert near == _lines(card["near_duplicate"][1])
    flagged = set(near) | set(duplicate_lines[0])
    grams = [_ngrams(_words(_row_text(r)), 3) for r in rows]
    closest = max(len(grams[i] & grams[j]) / len(grams[i] | grams[j])
                  for i, j in itertools.combinations(range(len(rows)), 2) if j + 1 not in flagged)
    assert closest < 0.5  # no accidental near duplicates: the planted ones score >= 0.9


def test_pii_only_in_listed_user_turns(rows, card):
    by_line = {}
    for i, row in enumerate(rows, 1):
        for m in row["messages"]:
            kinds = _pii_kinds(m["content"])
            assert not kinds or m["role"] == "user", (i, m["role"], kinds)
            by_line.setdefault(i, set()).update(kinds)
    lines = sorted(i for i, kinds in by_line.items() if kinds)
    assert len(lines) == 12 == int(card["pii"][0])
    assert lines == _lines(card["pii"][1])
    per_kind = {kind: sum(kind in kinds for kinds in by_line.values()) for kind in PII_PATTERNS}
    assert per_kind == {"email": 4, "phone": 3, "credit_card": 1, "ipv4": 2, "iban": 1, "api_key": 2}
    assert per_kind == {kind: int(card[kind][0]) for kind in PII_PATTERNS}


def test_contamination_is_the_one_listed_row(rows, card, shared_data):
    benchmark = set()
    for path in sorted((shared_data / "mmlu").glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            for record in csv.reader(f):
                benchmark |= _ngrams(_words(record[0]), 13)
    assert len(benchmark) > 100_000  # all 57 subjects were read
    lines = [i for i, r in enumerate(rows, 1) if _ngrams(_words(_row_text(r)), 13) & benchmark]
    assert lines == _lines(card["contamination"][1]) and len(lines) == 1 == int(card["contamination"][0])
    assert demo.MMLU_FALLBACK[0] in rows[lines[0] - 1]["messages"][0]["content"]


def test_generator_flaw_report_matches_card(built, card):
    assert built[1] == {kind: _lines(card[kind][1]) for kind in ("exact_duplicate", "near_duplicate", "pii",
                                                                 "contamination")}
