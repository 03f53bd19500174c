import numpy as np
import pytest
import torch

from evals.stats import paired_win_rate
from evals.winrate import RewardJudge, win_rate

PROMPTS = ["How do I reset my password?", "What is 2 + 2?", "Name a primary colour."]
REPLIES = ["Open settings, choose Security, then Reset password and follow the emailed link.", "4", "Red."]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A 2-layer random Llama reward model (one logit) with SmolLM2's tokenizer and chat template."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from tasks.model import embedded_model_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-reward")
    LlamaForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_scores_are_deterministic_one_per_pair_and_independent_of_batching(judge_dir):
    judge = RewardJudge(judge_dir, batch_size=3)
    scores = judge.score(PROMPTS, REPLIES)
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert np.array_equal(scores, RewardJudge(judge_dir, batch_size=3).score(PROMPTS, REPLIES))
    assert len(set(scores.tolist())) == 3  # a random head still separates different pairs
    # batch of 1 has no padding: the padded batch must read each pair's last real token
    judge.batch_size = 1
    np.testing.assert_allclose(judge.score(PROMPTS, REPLIES), scores, atol=1e-5)


def test_prompt_and_reply_are_chat_templated_or_joined(judge_dir):
    judge = RewardJudge(judge_dir)
    text = judge.format("Hi?", "Hello.")
    assert text.endswith("<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n")
    judge.tokenizer.chat_template = None
    assert judge.format("Hi?", "Hello.") == "Hi?\n\nHello."
    assert judge.score(["Hi?"], ["Hello."]).shape == (1,)


def test_rejects_a_classifier_with_more_than_one_label(tmp_path, judge_dir):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(judge_dir, num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(judge_dir).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels=1"):
        RewardJudge(tmp_path)


def test_same_replies_tie_and_swapping_sides_mirrors_the_win_rate(judge_dir):
    judge = RewardJudge(judge_dir)
    same = win_rate(judge, PROMPTS, REPLIES, REPLIES, n_resamples=200)
    assert (same.estimate, same.low, same.high, same.n) == (0.5, 0.5, 0.5, 3)
    other = ["I don't know.", "5", "Blue, I think."]
    forward = win_rate(judge, PROMPTS, REPLIES, other, n_resamples=200)
    backward = win_rate(judge, PROMPTS, other, REPLIES, n_resamples=200)
    assert forward.estimate + backward.estimate == pytest.approx(1.0)


def test_win_rate_from_known_scores(judge_dir, monkeypatch):
    judge = RewardJudge(judge_dir)
    monkeypatch.setattr(judge, "score", lambda prompts, replies: np.array([float(r) for r in replies]))
    prompts = ["p"] * 4
    # tuned vs base: win, tie, loss, win -> (1 + 0.5 + 0 + 1) / 4
    ci = win_rate(judge, prompts, ["1", "2", "3", "4"], ["2", "2", "1", "5"], n_resamples=500, confidence=0.9, seed=3)
    assert ci.estimate == 0.625 and ci.n == 4 and ci.confidence == 0.9
    expected = paired_win_rate([1, 2, 3, 4], [2, 2, 1, 5], n_resamples=500, confidence=0.9, seed=3)
    assert (ci.low, ci.high) == (expected.low, expected.high)
    assert 0.0 <= ci.low < 0.625 < ci.high <= 1.0
    all_wins = win_rate(judge, prompts, ["0"] * 4, ["1"] * 4, n_resamples=100)
    assert (all_wins.estimate, all_wins.low, all_wins.high) == (1.0, 1.0, 1.0)
    # within the tie tolerance a small gap is a tie
    ties = win_rate(judge, prompts, ["1.0"] * 4, ["1.05"] * 4, n_resamples=100, tie_tol=0.1)
    assert (ties.estimate, ties.low, ties.high) == (0.5, 0.5, 0.5)


def test_mismatched_lengths_are_refused(judge_dir):
    judge = RewardJudge(judge_dir)
    with pytest.raises(ValueError, match="one base and one tuned reply per prompt"):
        win_rate(judge, PROMPTS, REPLIES, REPLIES[:2])
