"""Transfer to a classification head: the head learns while a frozen backbone stays bit-equal; layer-wise rates."""
import json

import torch
from transformers import AutoModelForSequenceClassification

from tasks.model import ModelRef
from tasks.training.classify import train_classify, transfer_lrs
from tasks.training.config import TransferConfig
from tests.unit.training.support import fast

WORDS = {"billing": "invoice refund charge", "install": "package apt setup", "restore": "snapshot recover file"}


def write_labelled(path, repeats=8):
    with open(path, "w") as f:
        for r in range(repeats):
            for label, words in WORDS.items():
                f.write(json.dumps({"text": f"ticket {r}: {words} please", "label": label}) + "\n")
    return path


def test_frozen_encoder_trains_the_head_only(tiny_model_dir, tmp_path):
    data = write_labelled(tmp_path / "train.jsonl")
    cfg = fast("full", recipe="classify", max_steps=20, learning_rate=5e-2)
    result = train_classify(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, data, tmp_path / "out")
    assert result.final_loss < result.first_loss

    trained = AutoModelForSequenceClassification.from_pretrained(result.model_dir)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    base_state = base.model.state_dict()
    assert all(torch.equal(v, base_state[k]) for k, v in trained.model.state_dict().items())
    assert trained.config.id2label == {0: "billing", 1: "install", 2: "restore"}
    assert result.trainable_params == trained.score.weight.numel()


def test_layer_wise_rates_split_the_blocks(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    rules = transfer_lrs(model, TransferConfig(freeze_encoder=False,
                                               layer_wise_lr={"encoder": 1e-5, "decoder": 1e-4, "head": 1e-3}))
    assert rules == {"score": 1e-3, "embeddings": 1e-5, "layers.0-0": 1e-5, "layers.1-1": 1e-4, "norm": 1e-4}


def test_unfrozen_encoder_moves_with_its_own_rate(tiny_model_dir, tmp_path):
    data = write_labelled(tmp_path / "train.jsonl")
    cfg = fast("full", recipe="classify", max_steps=4, learning_rate=1e-2,
               transfer={"freeze_encoder": False, "layer_wise_lr": {"encoder": 0.0001, "decoder": 1e-2, "head": 1e-2}})
    result = train_classify(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, data, tmp_path / "out")
    trained = AutoModelForSequenceClassification.from_pretrained(result.model_dir)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    moved = {k: (v - base.model.state_dict()[k]).abs().max().item() for k, v in trained.model.state_dict().items()}
    assert moved["layers.1.mlp.down_proj.weight"] > 10 * moved["layers.0.mlp.down_proj.weight"] > 0
