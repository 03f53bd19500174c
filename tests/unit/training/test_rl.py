"""GRPO and RLOO pass PPO's learning test; the shared prompts, reward and KL monitor."""
import json
import logging

import pytest
from transformers import TrainerControl, TrainerState

from tasks.model import ModelRef
from tasks.training.callbacks import KLDivergenceCallback
from tasks.training.config import TrainConfig
from tasks.training.recipes import trainer_for
from tasks.training.rl import Reward, load_prompts
from tests.unit.training.support import backtick_reward, rl_config


@pytest.mark.parametrize("recipe", ["grpo", "rloo"])
def test_group_recipes_raise_a_rule_based_reward_with_kl_under_the_monitor(recipe, sft_tiny_dir, chat_path, tmp_path):
    result = trainer_for(recipe)(rl_config(recipe, max_steps=24), ModelRef.of(str(sft_tiny_dir)), sft_tiny_dir,
                                 chat_path, tmp_path / recipe, reward=Reward.from_function(backtick_reward))
    history = [h for h in json.loads(result.history_path.read_text()) if "reward" in h]
    first, last = [sum(h["reward"] for h in part) / len(part) for part in (history[:6], history[-6:])]
    assert last > first + 0.2, (first, last)
    assert max(h["kl"] for h in history) < 2.0
    assert (tmp_path / recipe / "reward_vs_kl.png").stat().st_size > 1000


def test_prompts_come_from_chats_and_pairs_once_each(chat_path, tmp_path):
    prompts = load_prompts(chat_path)
    assert len(prompts) == 12  # 6 questions, with and without a system turn
    assert all(p[-1]["role"] == "user" for p in prompts)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}) + "\n")
    assert load_prompts(pairs) == [[{"role": "user", "content": "hi"}]]


def test_reward_function_by_name_reads_conversational_completions():
    reward = Reward.from_function("tests.unit.training.support:backtick_reward")
    assert reward(["q", "q"], [[{"role": "assistant", "content": "`a` `b`"}], "none"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="reward_function=nope:missing"):
        Reward.from_function("nope:missing")


def test_config_needs_exactly_one_reward_source():
    with pytest.raises(ValueError, match="recipe ppo needs train.rl"):
        TrainConfig(recipe="ppo")
    with pytest.raises(ValueError, match="exactly one of reward_model"):
        TrainConfig(recipe="ppo", rl={"reward_model": "x", "reward_function": "m:f"})
    with pytest.raises(ValueError, match="multiple of grpo.num_generations"):
        TrainConfig(recipe="grpo", batch_size=6, rl={"reward_function": "m:f"})
    with pytest.raises(ValueError, match="not method=prefix"):
        TrainConfig(recipe="rloo", method="prefix", rl={"reward_function": "m:f"})


def test_kl_monitor_warns_once_and_stops_when_asked(caplog):
    state, control = TrainerState(global_step=7), TrainerControl()
    watch = KLDivergenceCallback(threshold=0.1)
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        watch.on_log(None, state, control, logs={"kl": 0.05})
        assert watch.tripped_at is None
        watch.on_log(None, state, control, logs={"kl": 0.3})
        watch.on_log(None, state, control, logs={"kl": 0.4})
    assert watch.tripped_at == 7 and len(caplog.records) == 1 and "0.300" in caplog.text
    assert not control.should_training_stop
    stopper = KLDivergenceCallback(threshold=0.1, stop=True)
    stopper.on_log(None, state, control, logs={"kl": 0.3})
    assert control.should_training_stop


def test_kl_monitor_stops_a_ppo_run(sft_tiny_dir, chat_path, tmp_path):
    from tasks.training.ppo import train_ppo

    cfg = rl_config("ppo", max_steps=20, kl_threshold=1e-4, rl_stop=True)
    result = train_ppo(cfg, ModelRef.of(str(sft_tiny_dir)), sft_tiny_dir, chat_path, tmp_path / "ppo",
                       reward=Reward.from_function(backtick_reward))
    assert len(json.loads(result.history_path.read_text())) < 20


def test_python_api_ppo_and_rlhf_trainers(sft_tiny_dir, tmp_path):
    from tasks.training.api import PPOTrainer, RLHFConfig, RLHFTrainer
    from tasks.training.config import PPOConfig

    train = rl_config("ppo", max_steps=2)
    prompts = ["How do I start a backup?", [{"role": "user", "content": "Where are the logs?"}],
               {"instruction": "Restore one file", "output": "ignored"}]
    result = PPOTrainer(model=str(sft_tiny_dir), reward_model=backtick_reward, train=train,
                        config=PPOConfig(clip_range=0.1, n_epochs=1), out_dir=tmp_path / "ppo").train(prompts)
    assert result.recipe == "ppo" and len(json.loads(result.history_path.read_text())) == 2
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "prompts.jsonl").read_text().splitlines()]
    assert rows[2]["messages"] == [{"role": "user", "content": "Restore one file"}]

    rlhf = RLHFTrainer(policy_model=str(sft_tiny_dir), reward_model=backtick_reward, train=train,
                       config=RLHFConfig(kl_coef=0.2, clip_range=0.3, value_loss_coef=0.4))
    assert (rlhf.cfg.ppo.kl_coef, rlhf.cfg.ppo.clip_range, rlhf.cfg.ppo.vf_coef) == (0.2, 0.3, 0.4)
    with pytest.raises(ValueError, match="chat turns ending with a user turn"):
        rlhf.train([[{"role": "assistant", "content": "no question"}]])
