"""Domain vocabulary: pick domain terms, add them as tokens and initialise their embedding rows.

Terms come from the config (`add_tokens`), from the training data (`mine`: frequent words that the tokenizer
splits into many pieces), or both. Each new row starts as the mean of the embeddings of the pieces the old
tokenizer split the term into, so the model begins from what it already "meant" by that sequence rather than
from noise. The rows are stored beside the tokenizer and applied to the base model at train time
(`apply_extension`), so no model copy is saved; PEFT's trainable token indices then train just those rows.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, field_validator

from tasks.model import ModelRef
from tasks.schema import Section

if TYPE_CHECKING:  # torch, safetensors and tokenizers load on use: tasks.config imports TokenizerConfig
    import torch

_ROWS = "new_embeddings.safetensors"
_REPORT = "extension.json"
# A word is a run of letters, digits and underscores (AWS_ACCESS_KEY_ID); hyphens split it, so "dry-run" and
# "--keep-daily" count as ordinary words. A PII placeholder (<EMAIL_ADDRESS>) is matched whole, to be skipped whole.
_WORD = re.compile(r"<[A-Z_]+>|[^\W_]\w*")
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")


class MineConfig(Section):
    """Find candidate terms in the training split: frequent words the tokenizer cuts into many pieces."""

    enabled: bool = False
    min_count: int = Field(10, ge=1)
    """Occurrences a form (" word" mid-sentence, "word" elsewhere) needs in the training split to be added."""
    min_pieces: int = Field(3, ge=2)
    """Pieces the word needs mid-sentence (as " word"); 2-piece words are mostly ordinary inflections."""
    max_tokens: int = Field(16, ge=0)
    """Most new tokens mining may add (" word" and "word" count as two), most tokens saved first."""
    exclude: list[str] = Field(default_factory=list)
    """Words never to add. Placeholders (<EMAIL_ADDRESS>) and anything holding a digit are always skipped."""


class TokenizerConfig(Section):
    add_tokens: list[str] = Field(default_factory=list)
    """Terms to add whatever their frequency, as "term" and " term" (empty, with mining off: a no-op)."""
    mine: MineConfig = Field(default_factory=MineConfig)

    @field_validator("add_tokens")
    @classmethod
    def _not_blank(cls, terms: list[str]) -> list[str]:
        if any(not t.strip() for t in terms):
            raise ValueError("add_tokens entries must not be blank")
        return terms


class MinedTerm(BaseModel):
    term: str
    count: int  # both forms together
    pieces: int  # mid-sentence, i.e. of " term"
    forms: list[str]  # the tokens it adds
    saved: int  # tokens those forms save on the training split


class ExtensionResult(BaseModel):
    tokenizer_dir: Path
    added: list[str]
    tokens_per_word_before: float
    tokens_per_word_after: float
    mined: list[str] = []  # words that mining chose (their forms are in `added`)

    def summary(self) -> str:
        if not self.added:
            return "no tokens added"
        return (f"{len(self.added)} tokens added ({len(self.mined)} mined), tokens per word "
                f"{self.tokens_per_word_before:.2f} -> {self.tokens_per_word_after:.2f}")


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokens_per_word(tokenizer, texts: list[str]) -> float:
    words = sum(len(t.split()) for t in texts)
    tokens = sum(len(_ids(tokenizer, t)) for t in texts)
    return tokens / max(words, 1)


def _texts(train_path: Path) -> list[str]:
    """One text per row; messages on separate lines, as the chat template puts each after a newline."""
    out = []
    with open(train_path) as f:
        for line in f:
            row = json.loads(line)
            out.append("\n".join(m["content"] for m in row.get("messages", [])) or row.get("text", ""))
    return out


def _skipped(word: str, exclude: set[str]) -> bool:
    # Numbers, versions and codes (2024, 3.4, SVX-5021) stay in pieces: one token per value would hide the
    # digits the model otherwise reads one by one, and each value would be its own rarely-seen row.
    return word in exclude or bool(_PLACEHOLDER.fullmatch(word)) or any(c.isdigit() for c in word)


def _forms(word: str, tokenizer, bare: bool = True, spaced: bool = True) -> dict[str, list[int]]:
    """Tokens to add for `word` -> the base pieces each one replaces (forms already one token are left out).

    Why two forms: added tokens are matched in the raw text before byte-level BPE runs, and SmolLM2's BPE
    glues a space to the word after it (" Stratovault" -> "ĠStrat", "ov", "ault"), so text holds a word as
    " word" mid-sentence and as "word" at a line start or after "`", "(", "/". An added "word" also matches
    inside " word" and leaves the space as a token of its own ("use", "Ġ", "Stratovault"), so a bare form is
    only added together with its spaced form, and never when " word" is already one token (that token would
    split in two). On conf/data/demo_support.jsonl (1.588 tokens per word before), the 9 words mined by
    default give 1.512 as bare forms only, 1.573 as spaced forms only, 1.5045 as both (18 tokens), and 1.5052
    with just the forms frequent enough (14 tokens): most uses there are "`stratovault ..." in code spans.
    """
    bare_ids, spaced_ids = _ids(tokenizer, word), _ids(tokenizer, " " + word)
    out = {}
    if bare and len(bare_ids) > 1 and len(spaced_ids) > 1:
        out[word], spaced = bare_ids, True
    if spaced and len(spaced_ids) > 1:
        out[" " + word] = spaced_ids
    return out


def mine_terms(texts: list[str], tokenizer, cfg: MineConfig) -> list[MinedTerm]:
    """Frequent words that split into many pieces, with the forms to add for each; most tokens saved first."""
    counts: Counter[str] = Counter()  # form -> occurrences; " word" where a space precedes it
    for text in texts:
        for m in _WORD.finditer(text):
            counts[(" " if m.start() and text[m.start() - 1] == " " else "") + m.group()] += 1
    exclude = set(cfg.exclude)
    found = []
    for word in dict.fromkeys(f.lstrip(" ") for f in counts):
        bare, spaced = counts[word], counts[" " + word]
        if max(bare, spaced) < cfg.min_count or _skipped(word, exclude):
            continue
        pieces = len(_ids(tokenizer, " " + word))
        forms = _forms(word, tokenizer, bare >= cfg.min_count, spaced >= cfg.min_count)
        if pieces >= cfg.min_pieces and forms:
            saved = sum(counts[f] * (len(p) - 1) for f, p in forms.items())
            found.append(MinedTerm(term=word, count=bare + spaced, pieces=pieces, forms=list(forms), saved=saved))
    return sorted(found, key=lambda m: (-m.saved, m.term))


def plan_tokens(cfg: TokenizerConfig, tokenizer, texts: list[str]) -> tuple[dict[str, list[int]], list[MinedTerm]]:
    """New token -> base pieces it replaces: configured terms first, then mined ones within `mine.max_tokens`."""
    plan: dict[str, list[int]] = {}
    for term in dict.fromkeys(cfg.add_tokens):
        if term[0].isspace():  # the config chose the form
            plan.update({term: p for p in [_ids(tokenizer, term)] if len(p) > 1})
        else:
            plan.update(_forms(term, tokenizer))
    chosen, budget = [], cfg.mine.max_tokens
    for mined in mine_terms(texts, tokenizer, cfg.mine) if cfg.mine.enabled else []:
        new = {f: p for f, p in _forms(mined.term, tokenizer).items() if f in mined.forms and f not in plan}
        if new and len(new) <= budget:
            plan.update(new)
            chosen.append(mined)
            budget -= len(new)
    return plan, chosen


def _mean_rows(weight: torch.Tensor, plan: dict[str, list[int]]) -> torch.Tensor:
    import torch

    return torch.stack([weight[pieces].mean(0) for pieces in plan.values()])


def extend_tokenizer(cfg: TokenizerConfig, base: ModelRef, train_path: Path, out_dir: Path) -> ExtensionResult:
    import torch
    from safetensors.torch import save_file
    from tokenizers import AddedToken

    tokenizer = base.load_tokenizer()
    texts = _texts(train_path)
    before = tokens_per_word(tokenizer, texts)
    plan, mined = plan_tokens(cfg, tokenizer, texts)
    tok_dir = Path(out_dir) / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    if plan:
        # normalized=False: match the raw text, spaces included. single_word stays off: it would refuse
        # " Stratovault" after "use" (the match's left neighbour "e" is a word character).
        tokenizer.add_tokens([AddedToken(t, normalized=False) for t in plan])
        model = base.load_model()
        rows = {"input": _mean_rows(model.get_input_embeddings().weight.detach(), plan),
                "ids": torch.tensor(tokenizer.convert_tokens_to_ids(list(plan)))}
        if not model.config.tie_word_embeddings:
            rows["output"] = _mean_rows(model.get_output_embeddings().weight.detach(), plan)
        save_file({k: v.contiguous() for k, v in rows.items()}, str(tok_dir / _ROWS))
    tokenizer.save_pretrained(tok_dir)
    after = tokens_per_word(tokenizer, texts)
    if plan:
        report = {"tokens_per_word": {"before": before, "after": after},
                  "mined": [m.model_dump() for m in mined],
                  "pieces": {t: tokenizer.convert_ids_to_tokens(p) for t, p in plan.items()}}
        (tok_dir / _REPORT).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return ExtensionResult(tokenizer_dir=tok_dir, added=list(plan), tokens_per_word_before=before,
                           tokens_per_word_after=after, mined=[m.term for m in mined])


def apply_extension(model, tokenizer, tokenizer_dir: Path) -> list[int]:
    """Resize `model` to `tokenizer` and load the stored rows of new tokens; returns their ids."""
    import torch
    from safetensors.torch import load_file

    rows_file = Path(tokenizer_dir) / _ROWS
    if not rows_file.exists():
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        return []
    rows = load_file(str(rows_file))
    ids = rows["ids"].tolist()
    # mean_resizing=False: the stored rows overwrite the new rows, so skip fitting a distribution to sample them
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[ids] = rows["input"].to(model.dtype)
        if "output" in rows:
            model.get_output_embeddings().weight[ids] = rows["output"].to(model.dtype)
    return ids
