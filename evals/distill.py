"""What distillation bought: the student against its SFT twin (same data and steps), and against the teacher in size
and generation speed. Also the per-row log-likelihood that continual learning's forgetting rows use."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from evals.perplexity import chat_row_nll
from evals.stats import paired_bootstrap
from evals.suite import read_messages
from tasks.model import load_model


def chat_loglik(model, tokenizer, rows: list[list[dict]], template: str | None) -> np.ndarray:
    """Per-row mean log-likelihood of the assistant tokens (higher is better; exp(-mean) is the perplexity)."""
    nll, counts = chat_row_nll(model, tokenizer, rows, chat_template=template)
    keep = counts > 0
    return -(nll[keep] / counts[keep])


@torch.no_grad()
def generation_speed(model, tokenizer, prompts: list[str], new_tokens: int = 32) -> float:
    """Greedy tokens per second, exactly `new_tokens` per prompt (EOS suppressed), one prompt at a time."""
    model.eval()
    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True) for p in prompts]
    model.generate(**ids[0], max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)  # warm-up
    start = time.perf_counter()
    for enc in ids:
        model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
    return len(prompts) * new_tokens / (time.perf_counter() - start)


def distill_comparison(student, trained, tokenizer, validation_path: Path, template: str | None, cfg) -> dict:
    """Held-out perplexity of the distilled student vs its SFT twin (paired per row: positive delta = distillation
    better), and parameters and tokens/s of student vs teacher."""
    rows = read_messages(validation_path, cfg.perplexity_max_rows)
    twin = load_model(str(trained.baseline_model_dir))
    distilled, sft = chat_loglik(student, tokenizer, rows, template), chat_loglik(twin, tokenizer, rows, template)
    d = cfg.drift
    delta = paired_bootstrap(sft, distilled, n_resamples=d.n_resamples, confidence=d.confidence, seed=d.seed)
    teacher = load_model(str(trained.teacher_dir))
    prompts = [r[-2]["content"] for r in rows[:4] if len(r) >= 2] or ["Hello"]
    student_speed, teacher_speed = (generation_speed(m, tokenizer, prompts) for m in (student, teacher))
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("student", student), ("teacher", teacher))}
    return {"distill_perplexity_student": float(np.exp(-distilled.mean())),
            "distill_perplexity_sft_twin": float(np.exp(-sft.mean())),
            "distill_loglik_delta_vs_sft": delta.estimate, "distill_loglik_delta_vs_sft_ci_low": delta.low,
            "distill_loglik_delta_vs_sft_ci_high": delta.high,
            "distill_params_student": float(params["student"]), "distill_params_teacher": float(params["teacher"]),
            "distill_tokens_per_s_student": student_speed, "distill_tokens_per_s_teacher": teacher_speed,
            "distill_speedup": student_speed / teacher_speed}
