"""The drift gate blocks an adapter trained to forget, and passes a harmless one.

A tiny model is first taught a synthetic multiple-choice benchmark (laid out like MMLU's CSVs, so the real
lm-eval path scores it); an adapter is then trained on the wrong answers. Everything runs on CPU in seconds.
"""
import copy
import csv
import random

import pytest
import torch
from peft import LoraConfig, get_peft_model

from evals.config import BenchmarkConfig, EvalConfig
from evals.drift import DriftConfig, drift_gate
from tasks.evaluate import _evaluate_model
from tasks.model import load_model, load_tokenizer

COLOURS = ["red", "green", "blue", "yellow"]


def _facts(n=16, seed=0):
    rng = random.Random(seed)
    return [(f"Which colour is the gadget number {i}?", rng.randrange(4)) for i in range(n)]


def _write_benchmarks(root, facts):
    for split in ("test", "dev"):
        (root / "mmlu" / split).mkdir(parents=True)
        rows = facts if split == "test" else facts[:5]
        with open(root / "mmlu" / split / f"gadgets_{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([[q, *COLOURS, "ABCD"[a]] for q, a in rows])
    (root / "truthfulqa").mkdir()
    with open(root / "truthfulqa" / "TruthfulQA.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        w.writerow(["x", "y", "Is the sky green?", "No", "No; Never", "Yes", "s"])


def _train(model, tok, texts, steps, lr):
    """Full-batch training with the loss on the answer word only (what the benchmark scores)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    enc = tok(texts, return_tensors="pt", padding=True)
    labels = torch.full_like(enc["input_ids"], -100)
    for i, text in enumerate(texts):
        start = len(tok(text.rsplit(" ", 1)[0])["input_ids"])
        end = int(enc["attention_mask"][i].sum())
        labels[i, start:end] = enc["input_ids"][i, start:end]
    model.train()
    for _ in range(steps):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return loss.item()


def _texts(facts, shift):
    return [f"Question: {q}\nAnswer: {COLOURS[(a + shift) % 4]}" for q, a in facts]


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    facts = _facts()
    _write_benchmarks(root, facts)
    torch.manual_seed(0)
    tok = load_tokenizer(str(tiny_model_dir))
    tok.padding_side = "right"
    base = load_model(str(tiny_model_dir))
    _train(base, tok, _texts(facts, 0), steps=200, lr=1e-2)  # the base learns the facts
    cfg = EvalConfig(perplexity=False, sample_generations=0,
                     benchmarks=BenchmarkConfig(data_dir=root, mmlu_per_subject=None, mmlu_forms=["cloze"]),
                     drift=DriftConfig(max_drop={"mmlu_cloze": 0.05}, n_resamples=1000))
    return base, tok, facts, cfg, root


def _score(model, tok, cfg, out):
    return _evaluate_model(model, tok, cfg, validation_path=None, out_dir=out).scores.per_item()


def test_gate_blocks_an_adapter_trained_to_forget(setup, tmp_path):
    base, tok, facts, cfg, _ = setup
    base_scores = _score(base, tok, cfg, tmp_path / "base")
    assert base_scores["mmlu_cloze"].mean() >= 0.9  # the base knows the facts

    forgetful = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    _train(forgetful, tok, _texts(facts, 1), steps=100, lr=1e-2)  # now it learns wrong colours
    tuned_scores = _score(forgetful.merge_and_unload(safe_merge=True), tok, cfg, tmp_path / "tuned")
    verdict = drift_gate(base_scores, tuned_scores, cfg.drift)
    (row,) = [r for r in verdict.rows if r.metric == "mmlu_cloze"]
    assert not verdict.passed and row.blocked
    assert row.ci_high < 0 and row.delta < -0.5
    assert "mmlu_cloze" in verdict.reasons[0]


def test_gate_passes_an_adapter_that_changes_nothing(setup, tmp_path):
    base, tok, _, cfg, _ = setup
    base_scores = _score(base, tok, cfg, tmp_path / "base")
    harmless = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, target_modules="all-linear"))  # B = 0: identity
    tuned_scores = _score(harmless.merge_and_unload(), tok, cfg, tmp_path / "tuned")
    verdict = drift_gate(base_scores, tuned_scores, cfg.drift)
    assert verdict.passed and all(r.delta == 0 for r in verdict.rows)
