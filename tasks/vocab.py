"""Domain vocabulary: add tokens to the tokenizer and initialise their embedding rows.

Each new row starts as the mean of the embeddings of the pieces the old tokenizer split the term into,
so the model begins from what it already "meant" by that sequence (rather than random noise). The rows
are stored beside the tokenizer and applied to the base model at train time, so no model copy is saved.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file

from tasks.schema import Section

_ROWS = "new_embeddings.safetensors"


class TokenizerConfig(Section):
    add_tokens: list[str] = Field(default_factory=list)
    """Domain terms to add as single tokens (empty: the stage is a no-op)."""


class ExtensionResult(BaseModel):
    tokenizer_dir: Path
    added: list[str]
    tokens_per_word_before: float
    tokens_per_word_after: float


def tokens_per_word(tokenizer, texts: list[str]) -> float:
    words = sum(len(t.split()) for t in texts)
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return tokens / max(words, 1)


def _texts(train_path: Path) -> list[str]:
    out = []
    with open(train_path) as f:
        for line in f:
            row = json.loads(line)
            out.append(" ".join(m["content"] for m in row.get("messages", [])) or row.get("text", ""))
    return out


def extend_tokenizer(cfg: TokenizerConfig, base_path: str, train_path: Path, out_dir: Path,
                     trust_remote_code: bool = False) -> ExtensionResult:
    from tasks.model import load_model, load_tokenizer

    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(base_path, trust_remote_code)
    texts = _texts(train_path)
    before = tokens_per_word(tokenizer, texts)
    vocab = tokenizer.get_vocab()
    new = [t for t in dict.fromkeys(cfg.add_tokens) if t not in vocab]
    pieces = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in new}
    tok_dir = out_dir / "tokenizer"
    if new:
        tokenizer.add_tokens(new)
        model = load_model(base_path, trust_remote_code=trust_remote_code)
        emb_in = model.get_input_embeddings().weight.detach()
        rows = {"input": torch.stack([emb_in[pieces[t]].mean(0) for t in new])}
        if not model.config.tie_word_embeddings:
            emb_out = model.get_output_embeddings().weight.detach()
            rows["output"] = torch.stack([emb_out[pieces[t]].mean(0) for t in new])
        rows["ids"] = torch.tensor([tokenizer.convert_tokens_to_ids(t) for t in new])
        tok_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in rows.items()}, str(tok_dir / _ROWS))
    tokenizer.save_pretrained(tok_dir)
    after = tokens_per_word(tokenizer, texts)
    return ExtensionResult(tokenizer_dir=tok_dir, added=new, tokens_per_word_before=before, tokens_per_word_after=after)


def apply_extension(model, tokenizer, tokenizer_dir: Path) -> list[int]:
    """Resize `model` to `tokenizer` and load the stored rows of new tokens; returns their ids."""
    rows_file = Path(tokenizer_dir) / _ROWS
    if not rows_file.exists():
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        return []
    rows = load_file(str(rows_file))
    ids = rows["ids"].tolist()
    model.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():
        model.get_input_embeddings().weight[ids] = rows["input"].to(model.dtype)
        if "output" in rows:
            model.get_output_embeddings().weight[ids] = rows["output"].to(model.dtype)
    return ids
