"""One short real run per method on SmolLM2-135M-Instruct (30 blocks, hidden 576, k/v 192, MLP 1536, tied head).

Three steps on the same batch of two demo conversations (so losses compare), then the saved result is loaded
the way evaluation loads it. Asserts the trainable-parameter count from SmolLM2's shapes and a falling loss.
"""
import itertools
import json
import math

import pytest
import torch

from tasks.model import EMBEDDED, ModelRef
from tasks.training.config import TrainConfig
from tasks.training.loading import load_trained
from tasks.training.sft import train_sft

pytestmark = pytest.mark.slow

TOTAL = 134_515_008
L, H, KV, FF = 30, 576, 192, 1536
QKVO = H * H * 2 + H * KV * 2
BLOCK = QKVO + 3 * H * FF + 2 * H
EXPECTED = {  # method: (train overrides, trainable parameters)
    "lora": ({"learning_rate": 2e-3}, L * 8 * (2 * (H + H) + 2 * (H + KV))),
    "rslora": ({"learning_rate": 2e-3}, L * 8 * (2 * (H + H) + 2 * (H + KV))),
    "dora": ({"learning_rate": 2e-3}, L * (8 * (2 * (H + H) + 2 * (H + KV)) + 2 * H + 2 * KV)),
    "qlora": ({"learning_rate": 2e-3}, L * 8 * (2 * (H + H) + 2 * (H + KV))),
    "adalora": ({"learning_rate": 5e-3, "adalora": {"tinit": 1, "tfinal": 1}},
                L * (12 * 4 * H + 12 * (2 * H + 2 * KV) + 4 * 12)),
    "ia3": ({"learning_rate": 3e-2}, L * (KV + KV + FF)),
    "prefix": ({"learning_rate": 3e-2}, 20 * L * 2 * KV),
    "prompt": ({"learning_rate": 3e-1}, 20 * H),
    "ptuning": ({"learning_rate": 1e-2}, 20 * H + (H * 128 + 128) + (128 * 128 + 128) + (128 * H + H)),
    "full": ({"learning_rate": 5e-5}, TOTAL),
    "partial": ({"learning_rate": 2e-4}, 2 * BLOCK),
    "galore": ({"learning_rate": 5e-5, "galore": {"rank": 32}}, TOTAL),
}


@pytest.fixture(scope="module")
def demo_rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "train.jsonl"
    with open("conf/data/demo_support.jsonl") as f:
        rows = list(itertools.islice(f, 2))
    path.write_text("".join(rows))
    return path


@pytest.mark.parametrize("method", list(EXPECTED))
def test_method_on_smollm2(method, demo_rows, tmp_path):
    overrides, trainable = EXPECTED[method]
    cfg = TrainConfig.model_validate({"method": method, "max_steps": 3, "epochs": 3, "batch_size": 2, "max_length": 128,
                                      "logging_steps": 1, "save_steps": 100, "warmup_fraction": 0.0,
                                      "lr_scheduler": "constant_with_warmup", **overrides})
    base = ModelRef.of(EMBEDDED)
    result = train_sft(cfg, base, base.path, demo_rows, tmp_path)
    assert result.trainable_params == trainable
    losses = [h["loss"] for h in json.loads(result.history_path.read_text()) if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses  # every step sees the same two rows: the loss must fall

    model, tokenizer = load_trained(base, base.path, adapter_dir=result.adapter_dir, model_dir=result.model_dir)
    enc = base.load_tokenizer().apply_chat_template([{"role": "user", "content": "How do I restore a file?"}],
                                                   add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape[:2] == enc["input_ids"].shape and torch.isfinite(logits).all()
