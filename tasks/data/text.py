"""Text views of a normalised row shared by dedup, PII and decontamination."""
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def fields(row: dict[str, Any]) -> Iterator[tuple[str, int | None, str]]:
    """(key, message index, text) for every free-text field of a row, in a fixed order.

    A label (KTO's bool, a labelled text's class name) is not free text: PII redaction never touches it,
    and `map_fields` carries it over unchanged."""
    for i, m in enumerate(row["messages"]):
        yield "messages", i, m["content"]
    for key in ("chosen", "rejected", "text"):
        if key in row:
            yield key, None, row[key]


def map_fields(row: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """A copy of the row with `fn` applied to every free-text field."""
    out = dict(row)
    out["messages"] = [{"role": m["role"], "content": fn(m["content"])} for m in row["messages"]]
    for key in ("chosen", "rejected", "text"):
        if key in row:
            out[key] = fn(row[key])
    return out


def normalise_text(s: str) -> str:
    """NFKC + casefold + collapsed whitespace: the form two rows must share to be exact duplicates."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", s).casefold()).strip()


def canonical(row: dict[str, Any]) -> str:
    """The whole row as one normalised string; roles and field names take part so structure counts.

    A KTO row's label is part of it (one reply judged both ways is two rows). A labelled text's class is not:
    it is keyed like a plain text row, so one text under two labels is a duplicate and the first row is kept
    (near dedup would find the pair anyway, and a classifier cannot learn both)."""
    parts = [f"{m['role']}: {m['content']}" for m in row["messages"]]
    parts += [f"{key}: {row[key]}" for key in ("chosen", "rejected", "text") if key in row]
    if "label" in row and "text" not in row:
        parts.append(f"label: {row['label']}")
    return normalise_text("\n".join(parts))


def words(s: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped) used for shingles and benchmark n-grams."""
    return _WORD.findall(s.casefold())


def token_count(row: dict[str, Any], tokenizer: Any = None) -> int:
    """Length of a row in tokenizer tokens, or whitespace words without a tokenizer."""
    return token_counts([row], tokenizer)[0]


def token_counts(rows: list[dict[str, Any]], tokenizer: Any = None, batch: int = 1024) -> list[int]:
    """`token_count` for many rows; the tokenizer sees batches of texts (fast tokenizers parallelise them)."""
    texts, owner = [], []
    for i, row in enumerate(rows):
        for _, _, t in fields(row):
            texts.append(t)
            owner.append(i)
    counts = [0] * len(rows)
    if tokenizer is None:
        lengths = [len(t.split()) for t in texts]
    else:
        lengths = [len(ids) for lo in range(0, len(texts), batch)
                   for ids in tokenizer(texts[lo : lo + batch], add_special_tokens=False)["input_ids"]]  # fmt: skip
    for i, n in zip(owner, lengths):
        counts[i] += n
    return counts
