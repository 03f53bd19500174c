"""KL to the reference from sampled replies: zero against itself, positive against a changed model, and equal to
a hand computation of Σ log π - log π_ref over the sampled tokens."""
import numpy as np
import pytest
import torch

from evals.kl import sampled_kl
from tasks.model import load_model
from tests.helpers import random_lora

PROMPTS = [[{"role": "user", "content": "How do I restore a file?"}], [{"role": "user", "content": "Hi there"}]]


def test_kl_is_zero_against_itself_and_positive_against_a_changed_model(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = load_model(str(tiny_model_dir))
    same, lengths = sampled_kl(base, base, tokenizer, PROMPTS, max_new_tokens=6)
    assert np.allclose(same, 0) and len(same) == 4 and (lengths >= 1).all()
    _, tuned = random_lora(tiny_model_dir)
    kls, _ = sampled_kl(tuned, load_model(str(tiny_model_dir)), tokenizer, PROMPTS, max_new_tokens=6)
    assert kls.mean() > 0.01


def test_kl_of_one_reply_matches_the_hand_sum(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    _, tuned = random_lora(tiny_model_dir)
    base = load_model(str(tiny_model_dir))
    kls, lengths = sampled_kl(tuned, base, tokenizer, PROMPTS[:1], max_new_tokens=5, samples_per_prompt=1, seed=3)
    enc = tokenizer.apply_chat_template(PROMPTS[0], add_generation_prompt=True, return_dict=True, return_tensors="pt")
    torch.manual_seed(3)
    ids = tuned.generate(**enc, do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=5,
                         pad_token_id=tokenizer.pad_token_id)
    n = enc["input_ids"].shape[1]
    total = 0.0
    with torch.no_grad():
        p, q = tuned(ids).logits.log_softmax(-1), base(ids).logits.log_softmax(-1)
        for t in range(n, ids.shape[1]):
            total += float(p[0, t - 1, ids[0, t]] - q[0, t - 1, ids[0, t]])
            if ids[0, t] == tokenizer.eos_token_id:
                break
    assert kls[0] == pytest.approx(total, abs=1e-4)
