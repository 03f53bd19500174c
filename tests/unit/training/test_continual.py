"""Continual learning (train.continual): the EWC penalty and Fisher, replay mixing, the LwF term, and each strategy
on a real SFT run of the tiny model."""
import json
import math

import pytest
import torch
from torch import nn

from tasks.model import ModelRef
from tasks.training.continual import (check_continual, ewc_penalty, fisher_diagonal, lwf_loss, previous_examples,
                                      replay_mix)
from tasks.training.sft import build_trainer, train_sft
from tests.unit.training.support import fast


class Recorder:
    def __init__(self):
        self.metrics: dict = {}

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)


# ---- EWC -------------------------------------------------------------------------------------------------------------

def test_ewc_penalty_is_zero_at_the_start_and_lambda_sum_f_delta_squared_after_a_shift():
    model = nn.Linear(2, 1)
    theta_old = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher = {"weight": torch.tensor([[1.0, 2.0]]), "bias": torch.tensor([3.0])}
    assert ewc_penalty(model, fisher, theta_old, lam=2.0).item() == 0.0
    with torch.no_grad():
        model.weight += torch.tensor([[0.5, -1.0]])
        model.bias += 2.0
    # 2 * (1 * 0.5² + 2 * 1² + 3 * 2²) = 2 * 14.25, no ½
    assert ewc_penalty(model, fisher, theta_old, lam=2.0).item() == pytest.approx(28.5)
    # only the parameters the Fisher covers (the trainable ones) count
    assert ewc_penalty(model, {"bias": fisher["bias"]}, theta_old, lam=2.0).item() == pytest.approx(24.0)


def test_fisher_diagonal_is_the_mean_squared_per_example_gradient_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 1), nn.Dropout(0.5))  # dropout: the estimate must run in eval mode
    model[0].bias.requires_grad_(False)
    xs, ys = torch.randn(5, 3), torch.randn(5)
    batches = [{"x": x[None], "y": y} for x, y in zip(xs, ys)]

    def half_squared_error(m, b):
        return 0.5 * (m(b["x"]).squeeze() - b["y"]) ** 2

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher = fisher_diagonal(model, batches, half_squared_error)

    # closed form: d/dw ½(w·x + b - y)² = (w·x + b - y) x
    with torch.no_grad():
        residual = xs @ model[0].weight[0] + model[0].bias - ys
    expected = ((residual[:, None] * xs) ** 2).mean(0)
    assert set(fisher) == {"0.weight"}  # the frozen bias has none
    assert torch.allclose(fisher["0.weight"][0], expected, atol=1e-6)
    assert model.training  # the mode is restored
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None


def test_previous_chat_rows_are_tokenised_with_labels_on_the_assistant_turns(tiny_model_dir, chat_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = previous_examples(chat_path, tokenizer, n=3, max_length=256)
    assert len(examples) == 3
    ids, labels = examples[0]["input_ids"][0], examples[0]["labels"][0]
    answer = tokenizer.decode(ids[labels != -100])
    assert "stratovault" in answer.lower() and "user" not in answer  # the reply, not the question
    assert (labels == -100).sum() > 5  # the prompt is masked
    assert [e["input_ids"].tolist() for e in previous_examples(chat_path, tokenizer, 3, 256)] == \
        [e["input_ids"].tolist() for e in examples]  # seeded


# ---- replay ------------------------------------------------------------------------------------------------------------

def _chat_rows(path, tag: str, n: int):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"{tag}{i}", "messages": [{"role": "user", "content": f"{tag} question {i}"},
                                                                {"role": "assistant", "content": f"{tag} answer {i}"}]})
                    + "\n")
    return path


def _ids(path) -> list[str]:
    return [json.loads(line)["id"] for line in open(path)]


def test_replay_mix_keeps_every_new_row_and_draws_the_fraction_from_the_previous_task(tmp_path):
    new, old = _chat_rows(tmp_path / "new.jsonl", "new", 10), _chat_rows(tmp_path / "old.jsonl", "old", 6)
    logger = Recorder()
    mixed = _ids(replay_mix(new, old, 0.25, 1, tmp_path / "a.jsonl", logger))
    assert sorted(i for i in mixed if i.startswith("new")) == sorted(f"new{i}" for i in range(10))
    drawn = [i for i in mixed if i.startswith("old")]
    assert len(drawn) == 3 == round(0.25 * 10 / 0.75) and len(set(drawn)) == 3  # 3/13 = 0.23: without replacement
    assert logger.metrics == {"continual/replay_new_rows": 10, "continual/replay_previous_rows": 3,
                              "continual/replay_fraction": 3 / 13}
    assert _ids(replay_mix(new, old, 0.25, 1, tmp_path / "b.jsonl")) == mixed  # seeded
    draws = {tuple(sorted(i for i in _ids(replay_mix(new, old, 0.25, s, tmp_path / "c.jsonl")) if "old" in i))
             for s in range(6)}
    assert len(draws) > 1

    # more previous rows wanted than there are: each taken whole as often as fits (30 = 5 x 6), no row favoured
    mixed = _ids(replay_mix(new, old, 0.75, 0, tmp_path / "d.jsonl"))
    assert len(mixed) == 40 and all(mixed.count(f"old{i}") == 5 for i in range(6))


def test_replay_refuses_rows_of_another_kind(tmp_path):
    new = _chat_rows(tmp_path / "new.jsonl", "new", 4)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(ValueError, match="preference pairs but the training data is chat rows"):
        replay_mix(new, pairs, 0.5, 0, tmp_path / "mixed.jsonl")


# ---- LwF -------------------------------------------------------------------------------------------------------------

def test_lwf_loss_is_zero_for_equal_logits_and_t_squared_kl_otherwise():
    logits = torch.tensor([[[0.0, 0.0], [5.0, -5.0], [1.0, 2.0]]])
    assert lwf_loss(logits, logits.clone(), torch.tensor([[True, True, True]]), 2.0).item() == 0.0

    old = torch.tensor([[[math.log(3), 0.0], [0.0, 0.0], [-9.0, 9.0]]])  # the last position is masked out
    mask = torch.tensor([[True, True, False]])
    t = 2.0

    def kl(p_logits, q_logits):
        p = [math.exp(v / t) / sum(math.exp(u / t) for u in p_logits) for v in p_logits]
        q = [math.exp(v / t) / sum(math.exp(u / t) for u in q_logits) for v in q_logits]
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))

    expected = t ** 2 * (kl([math.log(3), 0.0], [0.0, 0.0]) + kl([0.0, 0.0], [5.0, -5.0])) / 2
    assert lwf_loss(logits, old, mask, t).item() == pytest.approx(expected, rel=1e-5)
    assert lwf_loss(logits, old, torch.zeros(1, 3, dtype=torch.bool), t).item() == 0.0


# ---- on the SFT recipe -----------------------------------------------------------------------------------------------

def test_which_recipe_runs_which_strategy():
    for recipe in ("sft", "dpo", "grpo"):
        check_continual(recipe, "ewc")
    check_continual("ppo", "naive")
    with pytest.raises(ValueError, match="train.continual.strategy=lwf is not supported by train.recipe=dpo"):
        check_continual("dpo", "lwf")
    with pytest.raises(ValueError, match="train.continual.strategy=ewc is not supported by train.recipe=reward"):
        check_continual("reward", "ewc")


def _distance(model, start: dict) -> float:
    return sum(float((p.detach() - start[n]).norm() ** 2) for n, p in model.named_parameters() if p.requires_grad) ** .5


def test_ewc_keeps_the_weights_near_the_start(tmp_path, tiny_model_dir, chat_path):
    """A huge λ: the penalty gradient outweighs the new task's wherever the Fisher is not ~0 (Adam divides every
    parameter's step by its own gradient scale, so λ must dwarf 1/(gradient · shift) even for attention weights of a
    random model). No clipping: clipped to norm 1, the CE part vanishes under Adam's eps and the first step's momentum
    carries every weight on, penalty or not."""
    from transformers import AutoModelForCausalLM

    start = {n: p.detach().clone() for n, p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters()}
    distances, histories = {}, {}
    for strategy in ("naive", "ewc"):
        cfg = fast("full", max_grad_norm=0, continual={"strategy": strategy, "previous_data": str(chat_path),
                                                       "ewc_lambda": 1e9, "fisher_samples": 8})
        trainer = build_trainer(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path / strategy)
        trainer.train()
        distances[strategy] = _distance(trainer.model, start)
        histories[strategy] = [h for h in trainer.state.log_history if "loss" in h]
    assert distances["ewc"] < distances["naive"] / 5
    penalties = [h["continual/ewc_penalty"] for h in histories["ewc"]]
    assert penalties[0] == 0.0 and all(p > 0 for p in penalties[1:])  # zero at θ_old, the first step's weights
    assert all("continual/ewc_penalty" not in h for h in histories["naive"])


def test_ewc_resumes_towards_the_same_start_and_fisher(tmp_path, tiny_model_dir, chat_path):
    """θ_old and F are taken before `train()` loads the checkpoint: a killed and resumed run repeats the straight one."""
    from tests.unit.training.test_sft import KillAt, _curve

    cfg = fast("lora", max_steps=4, save_steps=2, continual={"strategy": "ewc", "previous_data": str(chat_path),
                                                             "ewc_lambda": 1e4, "fisher_samples": 4})
    args = (ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path)
    straight = train_sft(cfg, *args, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        train_sft(cfg, *args, tmp_path / "killed", callbacks=[KillAt(3)])
    resumed = train_sft(cfg, *args, tmp_path / "killed")
    assert resumed.resumed_from.endswith("checkpoint-2")
    assert [loss for _, loss in _curve(resumed)] == pytest.approx([loss for _, loss in _curve(straight)], abs=1e-5)

    def penalties(result):
        return [h["continual/ewc_penalty"] for h in json.loads(result.history_path.read_text()) if "loss" in h]

    assert penalties(resumed) == pytest.approx(penalties(straight), abs=1e-6) and penalties(straight)[-1] > 0


@pytest.mark.parametrize("method", ["lora", "full"])  # the adapter disabled / the starting weights as the old model
def test_lwf_term_is_zero_at_the_start_then_positive_and_logged(tmp_path, tiny_model_dir, chat_path, method):
    cfg = fast(method, max_steps=3, continual={"strategy": "lwf", "lwf_alpha": 1.0, "lwf_temperature": 2.0})
    result = train_sft(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path)
    terms = [h["continual/lwf_loss"] for h in json.loads(result.history_path.read_text()) if "loss" in h]
    assert len(terms) == 3
    assert terms[0] == pytest.approx(0.0, abs=1e-6)  # the first step's model is the old one
    assert min(terms[1:]) > 1e-4  # then the model has moved away from it


def test_replay_trains_on_the_mixed_rows(tmp_path, tiny_model_dir, chat_path):
    previous = _chat_rows(tmp_path / "previous.jsonl", "glacierdb", 6)
    logger = Recorder()
    cfg = fast("lora", continual={"strategy": "replay", "previous_data": str(previous), "replay_fraction": 0.5})
    trainer = build_trainer(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path / "run",
                            logger=logger)
    texts = [trainer.processing_class.decode(row["input_ids"]) for row in trainer.train_dataset]
    assert len(texts) == 48  # the 24 chats + 24 previous rows (each of the 6 four times)
    assert sum("glacierdb question" in t for t in texts) == 24
    assert sum("glacierdb" not in t for t in texts) == 24
    assert (tmp_path / "run" / "replay_train.jsonl").is_file()
    assert logger.metrics["continual/replay_previous_rows"] == 24


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_old_model_is_the_starting_model_whatever_training_did(tmp_path, tiny_model_dir, chat_path, method):
    """LwF's teacher: the base with the adapter disabled, or the model run on the trainable weights' starting values
    (the embedding is tied to the head: both must come from the start)."""
    from transformers import AutoModelForCausalLM

    from tasks.training.continual import old_model_logits

    cfg = fast(method, continual={"strategy": "lwf"}, packing=False)  # padded rows, as the plain forward below
    trainer = build_trainer(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path, tmp_path)
    model = trainer.model
    theta_old = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    torch.manual_seed(0)
    with torch.no_grad():  # stands in for training
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    moved = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(**inputs).logits
        now = model.eval()(**inputs).logits
    model.train()
    old = old_model_logits(model, theta_old, batch)
    assert (now - start).abs().max() > 0.1
    assert torch.allclose(old, start, atol=1e-4)
    assert model.training and all(torch.equal(p, moved[n]) for n, p in model.named_parameters())  # left as it was
