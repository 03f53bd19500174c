import math

import torch

from evals.perplexity import chat_perplexity, chat_perplexity_ci, chat_row_nll, generate_replies
from tasks.model import load_model, load_tokenizer
from tasks.training.templates import training_chat_template

ROWS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
    [{"role": "user", "content": "a much longer question about snapshots"}, {"role": "assistant", "content": "ok"}],
]


def test_perplexity_counts_only_assistant_tokens_and_ignores_padding(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    template = training_chat_template(tok)
    batched = chat_perplexity(model, tok, ROWS, batch_size=2, chat_template=template)
    one_by_one = chat_perplexity(model, tok, ROWS, batch_size=1, chat_template=template)
    assert math.isclose(batched, one_by_one, rel_tol=1e-4)

    nll, n = 0.0, 0  # by hand: assistant reply + <|im_end|> of each row
    for row in ROWS:
        enc = tok.apply_chat_template(row, chat_template=template, return_dict=True, return_assistant_tokens_mask=True,
                                      return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=enc["input_ids"]).logits[0, :-1]
        target, mask = enc["input_ids"][0, 1:], torch.as_tensor(enc["assistant_masks"])[0, 1:].bool()
        nll += torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum").item()
        n += int(mask.sum())
    assert n == len(tok("hello there")["input_ids"]) + len(tok("ok")["input_ids"]) + 2
    assert math.isclose(batched, math.exp(nll / n), rel_tol=1e-4)


def test_chat_perplexity_ci_is_the_same_perplexity_with_a_row_interval(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    template = training_chat_template(tok)
    ci = chat_perplexity_ci(model, tok, ROWS, chat_template=template, n_resamples=400)
    assert ci.n == 2 and math.isclose(ci.estimate, chat_perplexity(model, tok, ROWS, chat_template=template),
                                      rel_tol=1e-6)
    nll, counts = chat_row_nll(model, tok, ROWS, chat_template=template)
    row_ppl = sorted(math.exp(a / b) for a, b in zip(nll, counts))  # two rows: the bounds are the pure resamples
    assert math.isclose(ci.low, row_ppl[0], rel_tol=1e-6) and math.isclose(ci.high, row_ppl[1], rel_tol=1e-6)


def test_generate_replies_is_greedy_and_bounded(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    prompts = [ROWS[0][:1], ROWS[1][:1]]
    first, second = generate_replies(model, tok, prompts, 5), generate_replies(model, tok, prompts, 5)
    assert first == second and len(first) == 2
    assert all(len(tok(r, add_special_tokens=False)["input_ids"]) <= 5 for r in first)
