"""PPO's terms against hand computations on small tensors, then the learning test on a tiny model."""
import json
import math

import pytest
import torch

from tasks.model import ModelRef
from tasks.training.config import PPOConfig
from tasks.training.ppo import (KLController, entropy, gae, kl_per_token, masked_whiten, policy_loss, train_ppo,
                                value_loss)
from tasks.training.rl import Reward
from tests.unit.training.support import backtick_reward, rl_config


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_on_a_four_step_episode_matches_the_hand_computation():
    # γ=0.9, λ=0.8, V=[.5,.6,.7,.8], reward 1 on the last step; V after the end is 0.
    # δ = [.9·.6-.5, .9·.7-.6, .9·.8-.7, 1-.8] = [.04, .03, .02, .2];  A_t = δ_t + .72·A_{t+1}
    advantages, returns = gae(t([0, 0, 0, 1.0]), t([0.5, 0.6, 0.7, 0.8]), t([1, 1, 1, 1.0]), gamma=0.9, lam=0.8)
    a3 = 0.2
    a2 = 0.02 + 0.72 * a3
    a1 = 0.03 + 0.72 * a2
    a0 = 0.04 + 0.72 * a1
    assert advantages[0].tolist() == pytest.approx([a0, a1, a2, a3], abs=1e-6)
    assert returns[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7, a3 + 0.8], abs=1e-6)


def test_gae_ignores_padding_after_the_last_real_token():
    padded, _ = gae(t([0, 0, 0, 1.0, 5.0]), t([0.5, 0.6, 0.7, 0.8, 9.0]), t([1, 1, 1, 1, 0.0]), gamma=0.9, lam=0.8)
    plain, _ = gae(t([0, 0, 0, 1.0]), t([0.5, 0.6, 0.7, 0.8]), t([1, 1, 1, 1.0]), gamma=0.9, lam=0.8)
    assert padded[0, :4].tolist() == pytest.approx(plain[0].tolist(), abs=1e-6)
    assert padded[0, 4] == 0


@pytest.mark.parametrize("ratio, advantage, expected_loss, binds", [
    (1.1, +1.0, -1.1, False),  # inside the range: plain ratio · A
    (1.1, -1.0, 1.1, False),
    (1.5, +1.0, -1.2, True),   # above 1+ε with A>0: the gain is capped at (1+ε)·A
    (1.5, -1.0, 1.5, False),   # above with A<0: the pessimistic (unclipped) term is kept
    (0.5, +1.0, -0.5, False),  # below 1-ε with A>0: unclipped is worse, kept
    (0.5, -1.0, 0.8, True),    # below with A<0: capped at (1-ε)·|A|
])
def test_clipped_policy_objective(ratio, advantage, expected_loss, binds):
    old = t([math.log(0.2)])[None]
    new = old + math.log(ratio)
    loss, clip_frac, approx_kl = policy_loss(new, old, t([advantage])[None], t([1.0])[None], clip_range=0.2)
    assert float(loss) == pytest.approx(expected_loss, abs=1e-6)
    assert float(clip_frac) == float(binds)
    assert float(approx_kl) == pytest.approx(0.5 * math.log(ratio) ** 2, abs=1e-6)


def test_value_clipping_keeps_the_worse_of_clipped_and_unclipped():
    # old 1.0, returns 2.0, clip 0.2. New 1.5 -> clipped to 1.2: errors .25 vs .64, kept .64 -> loss ½·.64
    loss, frac = value_loss(t([1.5])[None], t([1.0])[None], t([2.0])[None], t([1.0])[None], clip_range_vf=0.2)
    assert float(loss) == pytest.approx(0.32) and float(frac) == 1.0
    # New 0.9 is inside [0.8, 1.2]: both errors 1.21 -> ½·1.21, no clip
    loss, frac = value_loss(t([0.9])[None], t([1.0])[None], t([2.0])[None], t([1.0])[None], clip_range_vf=0.2)
    assert float(loss) == pytest.approx(0.605) and float(frac) == 0.0
    loss, _ = value_loss(t([1.5])[None], t([1.0])[None], t([2.0])[None], t([1.0])[None], clip_range_vf=None)
    assert float(loss) == pytest.approx(0.125)


def test_entropy_term():
    # uniform over 2: ln 2; p = (.75, .25): -(.75 ln .75 + .25 ln .25); the masked third token is left out
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0], [9.0, 0.0]]])
    expected = (math.log(2) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    assert float(entropy(logits, t([1, 1, 0.0]))) == pytest.approx(expected, abs=1e-6)


def test_k1_and_k3_kl_estimators():
    logp, ref = t([math.log(0.5)]), t([math.log(0.25)])
    assert float(kl_per_token(logp, ref, "k1")) == pytest.approx(math.log(2))
    # k3 = (r - 1) - ln r with r = π_ref/π = 0.5
    assert float(kl_per_token(logp, ref, "k3")) == pytest.approx(-0.5 - math.log(0.5))
    assert float(kl_per_token(ref, logp, "k3")) == pytest.approx(1.0 - math.log(2.0))  # r = 2: k3 stays >= 0


def test_one_adaptive_kl_update():
    cfg = PPOConfig(kl_coef=0.1, adaptive_kl=True, target_kl=6.0, horizon=10000)
    up, down, near = KLController(cfg), KLController(cfg), KLController(cfg)
    up.update(9.0, 8)     # KL/target - 1 = 0.5, clipped to 0.2: β·(1 + 0.2·8/10000)
    down.update(3.0, 8)   # -0.5 clipped to -0.2
    near.update(6.6, 8)   # 0.1, inside the clip
    assert up.value == pytest.approx(0.1 * (1 + 0.2 * 8 / 10000))
    assert down.value == pytest.approx(0.1 * (1 - 0.2 * 8 / 10000))
    assert near.value == pytest.approx(0.1 * (1 + 0.1 * 8 / 10000))
    fixed = KLController(PPOConfig(kl_coef=0.1))
    fixed.update(9.0, 8)
    assert fixed.value == 0.1


def test_whitening_uses_real_tokens_only():
    x = masked_whiten(t([1.0, 2.0, 3.0, 100.0]), t([1, 1, 1, 0.0]))[0]
    assert x[:3].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert (x[:3] ** 2).mean().item() == pytest.approx(1.0, abs=1e-4)
    assert x[3] == 0


def test_ppo_raises_a_rule_based_reward_with_kl_under_the_monitor(sft_tiny_dir, chat_path, tmp_path):
    cfg = rl_config("ppo", max_steps=40, kl_threshold=2.0)
    result = train_ppo(cfg, ModelRef.of(str(sft_tiny_dir)), sft_tiny_dir, chat_path, tmp_path / "ppo",
                       reward=Reward.from_function(backtick_reward))
    history = json.loads(result.history_path.read_text())
    first, last = [sum(h["reward"] for h in part) / len(part) for part in (history[:8], history[-8:])]
    assert last > first + 0.2, (first, last)
    assert max(h["kl"] for h in history) < 2.0
    for key in ("reward_std", "entropy", "policy_loss", "value_loss", "clip_ratio", "value_clip_ratio", "approx_kl",
                "completions/mean_length", "kl_coef"):
        assert all(math.isfinite(h[key]) for h in history), key
    assert (tmp_path / "ppo" / "reward_vs_kl.png").stat().st_size > 1000
    assert (result.adapter_dir or result.model_dir).is_dir()


def test_ppo_resumes_from_its_checkpoint(sft_tiny_dir, chat_path, tmp_path):
    reward = Reward.from_function(backtick_reward)
    out = tmp_path / "ppo"
    train_ppo(rl_config("ppo", max_steps=3, save_steps=2), ModelRef.of(str(sft_tiny_dir)), sft_tiny_dir, chat_path,
              out, reward=reward)
    resumed = train_ppo(rl_config("ppo", max_steps=5, save_steps=2), ModelRef.of(str(sft_tiny_dir)), sft_tiny_dir,
                        chat_path, out, reward=reward)
    assert resumed.resumed_from.endswith("step-3.pt")
    assert [h["step"] for h in json.loads(resumed.history_path.read_text())] == [1, 2, 3, 4, 5]


def test_lora_ppo_samples_with_the_adapter_merged_and_leaves_the_base_untouched(tiny_model_dir, chat_path, tmp_path):
    from tasks.training.ppo import PPO, _batch
    from tasks.training.rl import load_prompts

    cfg = rl_config("ppo", max_steps=1).model_copy(update={"method": "lora"})
    ppo = PPO(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, Reward.from_function(backtick_reward))
    base = {n: p.detach().clone() for n, p in ppo.policy.named_parameters() if not p.requires_grad}
    ppo.step(ppo.rollout(_batch(load_prompts(chat_path), 0, 8, seed=0)))
    after = dict(ppo.policy.named_parameters())
    assert all(torch.allclose(after[n], v, atol=1e-6) for n, v in base.items())  # merge/unmerge round-trips
    lora = [p for n, p in after.items() if "lora_B" in n]
    assert lora and any(p.abs().sum() > 0 for p in lora)  # B starts at zero: the update moved it


def test_a_separate_critic_trains_and_is_saved_beside_the_policy(sft_tiny_dir, chat_path, tmp_path):
    cfg = rl_config("ppo", max_steps=2, ppo={"critic": "separate", "critic_model": str(sft_tiny_dir)})
    result = train_ppo(cfg, ModelRef.of(str(sft_tiny_dir)), sft_tiny_dir, chat_path, tmp_path / "ppo",
                       reward=Reward.from_function(backtick_reward))
    history = json.loads(result.history_path.read_text())
    assert len(history) == 2 and all(math.isfinite(h["value_loss"]) for h in history)
    assert (tmp_path / "ppo" / "critic").is_dir() and (tmp_path / "ppo" / "value_head.safetensors").is_file()
