"""KL(π_tuned || π_ref) on held-out prompts: how far online RL moved the policy from where it started.

Estimated from replies sampled from the tuned model's full distribution (temperature 1, no top-k/top-p, which
would bias it): per reply, Σ_t log π(y_t|·) - log π_ref(y_t|·) over its tokens up to EOS. The mean over replies
is an unbiased estimate of the sequence-level KL; training's own `kl` is the same quantity on training prompts.
"""
from __future__ import annotations

import numpy as np
import torch


def _reply_logps(model, ids: torch.Tensor, context: int) -> torch.Tensor:
    logits = model(input_ids=ids, use_cache=False).logits[:, context - 1:-1].float()
    return torch.gather(logits.log_softmax(-1), -1, ids[:, context:, None]).squeeze(-1)


@torch.no_grad()
def sampled_kl(policy, reference, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 48,
               samples_per_prompt: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(KL per reply in nats, tokens per reply), `samples_per_prompt` replies for each prompt (chat turns)."""
    eos = {tokenizer.eos_token_id, *np.atleast_1d(policy.generation_config.eos_token_id or [])} - {None}
    kls, lengths = [], []
    policy.eval(), reference.eval()
    for i, turns in enumerate(prompts):
        enc = tokenizer.apply_chat_template(turns, add_generation_prompt=True, return_dict=True, return_tensors="pt")
        torch.manual_seed(seed + i)
        ids = policy.generate(**enc, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                              max_new_tokens=max_new_tokens, num_return_sequences=samples_per_prompt,
                              pad_token_id=tokenizer.pad_token_id)
        context = enc["input_ids"].shape[1]
        response = ids[:, context:]
        is_eos = torch.isin(response, torch.tensor(sorted(int(e) for e in eos)))
        last = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((len(ids),), response.shape[1] - 1))
        mask = (torch.arange(response.shape[1])[None] <= last[:, None]).float()
        diff = (_reply_logps(policy, ids, context) - _reply_logps(reference, ids, context)) * mask
        kls += diff.sum(1).tolist()
        lengths += mask.sum(1).tolist()
    return np.asarray(kls), np.asarray(lengths)
