"""Packed rows attend per example (attention.py): the same outputs and gradients as each example on its own."""
import torch

from tasks.model import ModelRef
from tasks.training.attention import PACKED_SDPA, use_packed_attention


def test_packed_row_equals_examples_alone(tiny_model_dir):
    torch.manual_seed(0)
    model = ModelRef.of(str(tiny_model_dir)).load_model()
    with torch.no_grad():  # sharper attention, so that attending across examples would show
        for p in model.parameters():
            p.mul_(3)
    assert use_packed_attention(model) and model.config._attn_implementation == PACKED_SDPA
    lengths = [5, 11, 3, 9]
    examples = [torch.randint(0, 1000, (1, n)) for n in lengths]
    row = torch.cat(examples, dim=1)
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    packed = model(input_ids=row, position_ids=position_ids, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                   max_length_q=max(lengths), max_length_k=max(lengths)).logits
    alone = torch.cat([model(input_ids=x).logits for x in examples], dim=1)
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=1e-4)
    leaky = model(input_ids=row).logits  # one causal row: later examples see earlier ones
    assert (leaky - alone).abs().max() > 1e-2

    grads = []
    for out in (packed, alone):
        model.zero_grad()
        (out.float() ** 2).mean().backward(retain_graph=True)
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_generation_and_padded_batches_are_plain_sdpa(tiny_model_dir):
    model = ModelRef.of(str(tiny_model_dir)).load_model()
    ids = torch.randint(0, 1000, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    before = model(input_ids=ids, attention_mask=mask).logits
    use_packed_attention(model)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before, atol=1e-6, rtol=0)
    assert model.generate(ids[:1], max_new_tokens=3, do_sample=False).shape == (1, 10)
