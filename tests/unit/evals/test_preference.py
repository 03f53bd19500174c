"""Held-out preference metrics: reply log-probs equal a direct computation; margins and implicit reward by hand."""
import numpy as np
import pytest
import torch

from evals.preference import implicit_reward, preference_scores, reply_logps
from tasks.model import load_model, load_tokenizer


def test_reply_logps_are_the_reply_tokens_only(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    prompt = [{"role": "user", "content": "Where are the logs?"}]
    replies = ["In /var/log/stratovault.", "No idea, sorry about that, really no idea."]
    got = reply_logps(model, tokenizer, [prompt, prompt], replies)  # one padded batch of two lengths
    for reply, value in zip(replies, got):
        head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": reply}], tokenize=False)
        n_head = len(tokenizer(head, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        expected = logps[torch.arange(n_head - 1, ids.shape[1] - 1), ids[0, n_head:]].sum().item()
        assert value == pytest.approx(expected, abs=1e-3)


def test_preference_scores_and_implicit_reward(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    pairs = [{"messages": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": "go away now"}] * 3
    scores = preference_scores(model, tokenizer, pairs)
    assert scores["pref_margin"].shape == (3,)
    assert set(np.unique(scores["pref_accuracy"])) <= {0.0, 1.0}
    assert (scores["pref_accuracy"] == (scores["pref_margin"] > 0)).all()
    reward = implicit_reward(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0, 5.0]))
    assert reward == {"implicit_reward_margin": 0.5, "implicit_reward_accuracy": 0.5, "implicit_reward_ties": 0.25}
