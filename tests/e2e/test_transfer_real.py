"""One short real run per knowledge-transfer recipe on SmolLM2-135M-Instruct (distill, classify, fewshot, the
continual strategies, bottleneck adapters), with small limits: the loss falls and the result loads the way
evaluation loads it. The whole pipelines run from `make pipeline CONF=conf/smollm2/<recipe>.yaml`."""
import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from tasks.model import EMBEDDED, ModelRef
from tasks.training.config import TrainConfig
from tasks.training.loading import load_trained
from tasks.training.recipes import trainer_for

pytestmark = pytest.mark.slow


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=4, epochs=10, batch_size=4, max_length=96, logging_steps=1, save_steps=100,
                warmup_fraction=0.0, lr_scheduler="constant_with_warmup")
    return TrainConfig.model_validate({**base, **kw})


def _losses(result) -> list[float]:
    return [h["loss"] for h in json.loads(result.history_path.read_text()) if "loss" in h]


@pytest.fixture(scope="module")
def chats(tmp_path_factory):
    path = tmp_path_factory.mktemp("chats") / "train.jsonl"
    path.write_text("".join(open("conf/data/demo_support.jsonl").readlines()[:8]))
    return path


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    rows = [json.loads(line) for line in open("conf/data/demo_tickets.jsonl")]
    labels = sorted({r["label"] for r in rows})[:12]
    path = tmp_path_factory.mktemp("tickets") / "train.jsonl"
    path.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows
                            if r["label"] in labels))
    return path


def _run(recipe, cfg, data, tmp_path):
    base = ModelRef.of(EMBEDDED)
    return base, trainer_for(recipe)(cfg, base, base.path, data, tmp_path)


def test_distill_on_smollm2(chats, tmp_path):
    _, result = _run("distill", _cfg(recipe="distill", method="full", learning_rate=1e-4,
                                     distill={"compare_sft": False}), chats, tmp_path)
    losses = _losses(result)
    assert losses[-1] < losses[0], losses
    assert AutoConfig.from_pretrained(result.model_dir).num_hidden_layers == 15


def test_classify_on_smollm2(tickets, tmp_path):
    _, result = _run("classify", _cfg(recipe="classify", method="full", learning_rate=1e-3, batch_size=16,
                                      max_length=64, max_steps=6), tickets, tmp_path)
    assert _losses(result)[-1] < _losses(result)[0]
    assert AutoModelForSequenceClassification.from_pretrained(result.model_dir).config.num_labels == 12


def test_fewshot_on_smollm2(tickets, tmp_path):
    cfg = _cfg(recipe="fewshot", method="lora", learning_rate=2e-4, max_length=64, max_steps=3,
               fewshot={"n_ways": 3, "n_shots": 3, "n_queries": 3, "meta_batch_size": 1, "held_out_classes": 4})
    _, result = _run("fewshot", cfg, tickets, tmp_path)
    assert len(_losses(result)) == 3 and result.adapter_dir.is_dir()


@pytest.mark.parametrize("strategy", ["ewc", "replay", "lwf"])
def test_continual_sft_on_smollm2(strategy, chats, tmp_path):
    cfg = _cfg(method="lora", learning_rate=1e-3,
               continual={"strategy": strategy, "previous_data": str(chats), "fisher_samples": 4})
    _, result = _run("sft", cfg, chats, tmp_path)
    history = json.loads(result.history_path.read_text())
    assert _losses(result)[-1] < _losses(result)[0]
    if strategy == "ewc":
        assert any(h.get("continual/ewc_penalty", 0) > 0 for h in history)
    if strategy == "lwf":
        assert any(h.get("continual/lwf_loss", 0) > 0 for h in history)


def test_bottleneck_on_smollm2(chats, tmp_path):
    base, result = _run("sft", _cfg(method="bottleneck", learning_rate=1e-3), chats, tmp_path)
    assert _losses(result)[-1] < _losses(result)[0]
    assert result.trainable_params == 30 * 2 * (2 * 576 * 36 + 36 + 576)
    model, tokenizer = load_trained(base, base.path, adapter_dir=result.adapter_dir)
    enc = tokenizer("How do I restore a file?", return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**enc).logits).all()
