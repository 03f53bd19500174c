"""PPO for RLHF with a value head (Ziegler et al. 2019; Stiennon et al. 2020; the implementation details of Huang et
al. 2022): sample replies, score them with a reward model or function, improve the policy on a KL-penalised reward.

Why this file is ours: TRL removed PPOTrainer and AutoModelForCausalLMWithValueHead in 1.13 (we pin 1.16),
LLaMA-Factory's PPO stage needs trl <= 0.9.6, and Axolotl has no PPO. What the libraries still provide is used:
`model.generate` for rollouts, PEFT's `disable_adapter()` as the reference, TRL's `selective_log_softmax`,
`entropy_from_logits` and `disable_dropout_in_model`, transformers' callback protocol for logging and the KL monitor.

One step on a batch of train.batch_size prompts x:
  1. rollout  y ~ π(·|x) from the full distribution (temperature only: top-k/top-p would bias the KL estimate)
  2. score    R = reward(x, y) - missing_eos_penalty · [y has no EOS]
  3. per token t of y: log π_old, log π_ref, V_old;  kl_t = k1 or k3;  r_t = -β kl_t, plus R on the last token
  4. GAE      δ_t = r_t + γ V_{t+1} - V_t,  A_t = Σ_k (γλ)^k δ_{t+k},  G_t = A_t + V_old_t;  A whitened
  5. n_epochs x num_mini_batches optimizer steps on
              L = max(-Aρ, -A clip(ρ, 1±ε)) + vf_coef · ½ max((V-G)², (V_clip-G)²) - entropy_coef · H,  ρ = π/π_old
  6. adaptive β (Ziegler et al.): β ← β · (1 + clip(KL/target_kl - 1, ±0.2) · batch/horizon)
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerControl, TrainerState
from trl.trainer.utils import disable_dropout_in_model, entropy_from_logits, selective_log_softmax

from tasks.model import ModelRef
from tasks.training.callbacks import KLDivergenceCallback, MLflowMetrics, RewardKLPlot, peak_memory_mb
from tasks.training.common import (TrainResult, last_step_checkpoint, load_for_training, load_reference, precision_flags,
                                   save_step_checkpoint, save_model)
from tasks.training.config import PPOConfig, TrainConfig
from tasks.training.methods import count_parameters
from tasks.training.rl import Reward, load_prompts

# ---- the terms, each on plain tensors ([batch, response tokens]; mask 1 on real tokens) ----------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the real tokens (padding stays 0)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimates of KL(π || π_ref) from samples of π (Schulman's k1 and k3).

    k1 = log π/π_ref: unbiased, but single tokens go negative. k3 = (r - 1) - log r with r = π_ref/π: unbiased and
    never negative, with lower variance when the two are close.
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    return torch.expm1(-log_ratio) + log_ratio


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """(advantages, returns) by generalised advantage estimation; the value after the last real token is 0."""
    rewards, values = rewards * mask, values * mask
    advantages, last = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    return advantages * mask, (advantages + values) * mask


def policy_loss(logp, old_logp, advantages, mask, clip_range: float):
    """(clipped surrogate loss, fraction of tokens where the clip was binding, approx KL(π_old || π))."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean((logp - old_logp) ** 2, mask)
    return loss, clip_frac, approx_kl


def value_loss(values, old_values, returns, mask, clip_range_vf: float | None):
    """(½ squared error, the pessimistic one of clipped and unclipped; fraction of tokens where the clip bound)."""
    unclipped = (values - returns) ** 2
    if clip_range_vf is None:
        return 0.5 * masked_mean(unclipped, mask), torch.zeros(())
    clipped_values = old_values + (values - old_values).clamp(-clip_range_vf, clip_range_vf)
    clipped = (clipped_values - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask), masked_mean((clipped > unclipped).float(), mask)


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-token entropy of the policy's distribution over the real tokens."""
    return masked_mean(entropy_from_logits(logits.float()), mask)


class KLController:
    """β of the KL penalty: fixed, or adaptive (Ziegler et al. 2019) toward `target_kl` nats per response."""

    def __init__(self, cfg: PPOConfig, value: float | None = None):
        self.cfg, self.value = cfg, cfg.kl_coef if value is None else value

    def update(self, kl_per_response: float, n_samples: int) -> None:
        if self.cfg.adaptive_kl:
            error = max(-0.2, min(0.2, kl_per_response / self.cfg.target_kl - 1))
            self.value *= 1 + error * n_samples / self.cfg.horizon


# ---- the trainer -----------------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    ids: torch.Tensor  # prompt (left-padded) + response
    attention: torch.Tensor
    positions: torch.Tensor
    context: int  # prompt length: response token t sits at ids[:, context + t]
    mask: torch.Tensor  # [B, T] 1 up to and including the first EOS
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor  # [B] reward after the missing-EOS penalty
    raw_scores: torch.Tensor  # [B] the reward alone


class PPO:
    """Policy (with the configured method), value head (on the policy or on a separate critic), reference, reward."""

    def __init__(self, cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, reward: Reward, seed: int = 0):
        self.cfg, self.p, self.reward = cfg, cfg.ppo, reward
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.policy, self.tokenizer = load_for_training(cfg, model, tokenizer_dir, seed)
        self.tokenizer.padding_side, self.tokenizer.truncation_side = "left", "left"
        self.ref_model = load_reference(cfg, model, self.tokenizer, tokenizer_dir)
        self.critic = None
        if self.p.critic == "separate":
            critic_ref = ModelRef.of(self.p.critic_model) if self.p.critic_model else model
            self.critic, _ = load_for_training(cfg, critic_ref, tokenizer_dir, seed)
        hidden = self.policy.config.hidden_size if self.critic is None else self.critic.config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        nn.init.normal_(self.value_head.weight, std=1 / math.sqrt(hidden + 1))
        nn.init.zeros_(self.value_head.bias)
        for m in (self.policy, self.critic, self.ref_model):
            if m is not None:
                disable_dropout_in_model(m)  # old and new log-probs must come from the same function
                m.to(self.device)
        self.value_head.to(self.device)
        if cfg.gradient_checkpointing:
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.params = [p for m in (self.policy, self.critic, self.value_head) if m is not None
                       for p in m.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.kl_ctl = KLController(self.p)
        eos = self.policy.generation_config.eos_token_id
        self.eos_ids = sorted({self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None})
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                       enabled=precision_flags(cfg.precision)["bf16"])

    # -- forward passes --

    def _logits(self, model, r: dict, logits_to_keep: int, hidden: bool = False):
        out = model(input_ids=r["ids"], attention_mask=r["attention"], position_ids=r["positions"],
                    logits_to_keep=logits_to_keep, output_hidden_states=hidden, use_cache=False)
        return out.logits[:, :-1].float() / self.cfg.rl.temperature, out

    def _values(self, r: dict, policy_out) -> torch.Tensor:
        """V(s_t) for each response token t: the value head on the state that predicts token t."""
        if self.critic is None:
            states = policy_out.hidden_states[-1]
        else:
            states = self.critic(input_ids=r["ids"], attention_mask=r["attention"], position_ids=r["positions"],
                                 output_hidden_states=True, use_cache=False, logits_to_keep=1).hidden_states[-1]
        return self.value_head(states[:, r["context"] - 1:-1].float()).squeeze(-1)

    def _policy_pass(self, r: dict):
        """(logits over the response, values): one policy forward (plus the critic's when it is separate)."""
        keep = r["ids"].shape[1] - r["context"] + 1
        logits, out = self._logits(self.policy, r, keep, hidden=self.critic is None)
        return logits, self._values(r, out)

    def _reference_logprobs(self, r: dict, tokens: torch.Tensor) -> torch.Tensor:
        keep = r["ids"].shape[1] - r["context"] + 1
        reference = contextlib.nullcontext() if self.ref_model is not None else self.policy.disable_adapter()
        with reference:
            logits, _ = self._logits(self.ref_model or self.policy, r, keep)
        return selective_log_softmax(logits, tokens)

    @contextlib.contextmanager
    def _merged(self):
        """Sample with the adapter folded into the weights: decoding on a CPU is bound by the number of ops per token,
        and an unmerged LoRA adds three per linear layer (measured: 5.8 s instead of 8.7 s for 8 x 48 tokens).
        Not for QLoRA, whose 4-bit weights would be re-quantised."""
        if self.cfg.method == "qlora" or not hasattr(self.policy, "merge_adapter"):
            yield
            return
        self.policy.merge_adapter()
        try:
            yield
        finally:
            self.policy.unmerge_adapter()

    # -- one step --

    @torch.no_grad()
    def rollout(self, prompts: list[list[dict]]) -> Rollout:
        rl = self.cfg.rl
        enc = self.tokenizer.apply_chat_template(
            prompts, add_generation_prompt=True, padding=True, truncation=True,
            max_length=max(8, self.cfg.max_length - rl.max_new_tokens), return_dict=True, return_tensors="pt").to(
            self.device)
        self.policy.eval()
        with self.autocast, self._merged():
            out = self.policy.generate(**enc, do_sample=True, top_k=0, top_p=1.0, temperature=rl.temperature,
                                       max_new_tokens=rl.max_new_tokens, min_new_tokens=rl.min_new_tokens,
                                       eos_token_id=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id)
        context = enc["input_ids"].shape[1]
        response = out[:, context:]
        is_eos = torch.isin(response, torch.tensor(self.eos_ids, device=self.device))
        ended = is_eos.any(1)
        last = torch.where(ended, is_eos.int().argmax(1), torch.full_like(ended, response.shape[1] - 1, dtype=torch.long))
        mask = (torch.arange(response.shape[1], device=self.device)[None] <= last[:, None])
        response = response.masked_fill(~mask, self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(response, skip_special_tokens=True)
        raw = torch.tensor(self.reward(prompts, [t.strip() for t in texts]), dtype=torch.float32, device=self.device)
        penalty = rl.missing_eos_penalty or 0.0
        attention = torch.cat([enc["attention_mask"], mask.long()], 1)
        r = {"ids": torch.cat([enc["input_ids"], response], 1), "attention": attention,
             "positions": (attention.cumsum(1) - 1).clamp(min=0), "context": context}
        with self.autocast:
            logits, values = self._policy_pass(r)
            logprobs = selective_log_softmax(logits, response)
            ref_logprobs = self._reference_logprobs(r, response)
        return Rollout(**r, mask=mask.float(), logprobs=logprobs, ref_logprobs=ref_logprobs, values=values,
                       scores=raw - penalty * (~ended).float(), raw_scores=raw)

    def step(self, ro: Rollout) -> dict[str, float]:
        """Advantages from one rollout, then n_epochs x num_mini_batches PPO updates; returns the step's stats."""
        p, mask = self.p, ro.mask
        kl = kl_per_token(ro.logprobs, ro.ref_logprobs, p.kl_estimator) * mask
        rewards = -self.kl_ctl.value * kl
        last = mask.sum(1).long() - 1
        rewards[torch.arange(len(last)), last] += ro.scores
        advantages, returns = gae(rewards, ro.values, mask, p.gamma, p.lam)
        advantages = masked_whiten(advantages, mask)

        self.policy.train()
        totals: dict[str, list[float]] = {}
        for _ in range(p.n_epochs):
            for idx in torch.randperm(len(mask), device=self.device).chunk(p.num_mini_batches):
                mb = {"ids": ro.ids[idx], "attention": ro.attention[idx], "positions": ro.positions[idx],
                      "context": ro.context}
                m = mask[idx]
                with self.autocast:
                    logits, values = self._policy_pass(mb)
                tokens = ro.ids[idx, ro.context:]
                logp = selective_log_softmax(logits, tokens)
                pg, clip_frac, approx_kl = policy_loss(logp, ro.logprobs[idx], advantages[idx], m, p.clip_range)
                vf, vf_clip_frac = value_loss(values, ro.values[idx], returns[idx], m, p.clip_range_vf)
                ent = entropy(logits, m)
                loss = pg + p.vf_coef * vf - p.entropy_coef * ent
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.params, p.max_grad_norm)
                self.optimizer.step()
                for key, value in (("loss", loss), ("policy_loss", pg), ("value_loss", vf), ("entropy", ent),
                                   ("clip_ratio", clip_frac), ("value_clip_ratio", vf_clip_frac),
                                   ("approx_kl", approx_kl), ("grad_norm", grad_norm)):
                    totals.setdefault(key, []).append(float(value.detach()))

        kl_per_response = float((kl.sum(1)).mean())
        stats = {k: sum(v) / len(v) for k, v in totals.items()}
        stats.update({
            "reward": float(ro.raw_scores.mean()), "reward_std": float(ro.raw_scores.std()) if len(mask) > 1 else 0.0,
            "score_with_penalty": float(ro.scores.mean()), "kl": float(masked_mean(kl, mask)),
            "kl_per_response": kl_per_response, "non_score_reward": float(rewards.sum(1).mean() - ro.scores.mean()),
            "kl_coef": self.kl_ctl.value, "completions/mean_length": float(mask.sum(1).mean()),
            "completions/missing_eos_ratio": float((ro.scores != ro.raw_scores).float().mean()),
            "value_mean": float(masked_mean(ro.values, mask)), "returns_mean": float(masked_mean(returns, mask)),
        })
        self.kl_ctl.update(kl_per_response, len(mask))
        return stats

    # -- checkpoints --

    def state_dict(self, step: int, history: list[dict]) -> dict:
        trainable = {f"{i}.{n}": p.detach().cpu() for i, m in enumerate((self.policy, self.critic))
                     if m is not None for n, p in m.named_parameters() if p.requires_grad}
        return {"step": step, "trainable": trainable, "value_head": self.value_head.state_dict(),
                "optimizer": self.optimizer.state_dict(), "kl_coef": self.kl_ctl.value, "history": history,
                "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        for i, m in enumerate((self.policy, self.critic)):
            if m is None:
                continue
            params = dict(m.named_parameters())
            with torch.no_grad():
                for key, value in state["trainable"].items():
                    if key.startswith(f"{i}."):
                        params[key[2:]].copy_(value)
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.value = state["kl_coef"]
        torch.set_rng_state(state["rng"])

    def save(self, out_dir: Path) -> tuple[Path | None, Path | None]:
        """(adapter folder, full model folder): the policy as the other recipes save it, plus the value head."""
        from safetensors.torch import save_file

        adapter_dir, model_dir = save_model(self.policy, self.tokenizer, self.cfg, out_dir)
        if self.critic is not None:
            self.critic.save_pretrained(out_dir / "critic", safe_serialization=True)
        save_file({k: v.contiguous() for k, v in self.value_head.state_dict().items()}, out_dir / "value_head.safetensors")
        return adapter_dir, model_dir


def _batch(prompts: list, step: int, size: int, seed: int) -> list:
    """The step's prompts: a seeded shuffle per pass over the data, so a resumed run sees the same batches."""
    out = []
    for i in range(step * size, (step + 1) * size):
        epoch, pos = divmod(i, len(prompts))
        order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed + epoch))
        out.append(prompts[int(order[pos])])
    return out



def train_ppo(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
              logger=None, seed: int = 0, callbacks: list | None = None, reward: Reward | None = None) -> TrainResult:
    out_dir = Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts(train_path)
    reward = reward or Reward.from_config(cfg.rl, out_dir, getattr(logger, "uri", None))
    torch.manual_seed(seed)
    ppo = PPO(cfg, model, Path(tokenizer_dir), reward, seed)
    trainable, total = count_parameters(ppo.policy)
    trainable += sum(p.numel() for p in ppo.value_head.parameters())
    if logger:
        logger.log_metrics({"train/trainable_params": trainable, "train/total_params": total})
    callbacks = [MLflowMetrics(logger), KLDivergenceCallback(cfg.rl.kl_threshold, cfg.rl.stop_on_kl, logger)
                 if cfg.rl.kl_threshold else None, RewardKLPlot(out_dir / "reward_vs_kl.png", logger), *(callbacks or [])]
    callbacks = [c for c in callbacks if c is not None]

    history, start = [], 0
    resumed, state = last_step_checkpoint(checkpoints)
    if resumed:
        ppo.load_state_dict(state)
        history, start = state["history"], state["step"]
    steps = min(cfg.max_steps, math.ceil(cfg.epochs * len(prompts) / cfg.batch_size))  # as the other recipes stop
    state, control = TrainerState(global_step=start, max_steps=steps), TrainerControl()
    for cb in callbacks:
        cb.on_train_begin(None, state, control)
    began = time.perf_counter()
    for step in range(start, steps):
        stats = ppo.step(ppo.rollout(_batch(prompts, step, cfg.batch_size, seed)))
        state.global_step = step + 1
        history.append({"step": step + 1, **stats})
        for cb in callbacks:
            cb.on_log(None, state, control, logs=stats)
        if step == start or (step + 1) % cfg.logging_steps == 0:
            print(f"ppo step {step + 1}/{steps}: reward {stats['reward']:+.3f}  kl {stats['kl']:.4f}  "
                  f"loss {stats['loss']:.4f}  length {stats['completions/mean_length']:.0f}", flush=True)
        if (step + 1) % cfg.save_steps == 0 or control.should_training_stop or step + 1 == steps:
            save_step_checkpoint(checkpoints, step + 1, ppo.state_dict(step + 1, history))
        if control.should_training_stop:
            break
    for cb in callbacks:
        cb.on_train_end(None, state, control)

    adapter_dir, model_dir = ppo.save(out_dir)
    history_path = out_dir / "history.json"
    history_path.write_text(json.dumps(history, indent=1))
    return TrainResult(
        recipe="ppo", method=cfg.method, adapter_dir=adapter_dir, model_dir=model_dir, history_path=history_path,
        trainable_params=trainable, total_params=total, first_loss=history[0]["loss"], final_loss=history[-1]["loss"],
        train_runtime_s=time.perf_counter() - began, peak_memory_mb=peak_memory_mb(),
        resumed_from=str(resumed) if resumed else None)

