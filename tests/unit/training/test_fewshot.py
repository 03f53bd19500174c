"""The fewshot recipe: the prototypical loss against a hand computation and on clustered points, the class split,
the pooled embedding, then meta-training, resume and the held-out evaluation on the tiny model."""
import json
import math
import random

import pytest
import torch

from tasks.model import ModelRef, load_model
from tasks.training.config import FewShotConfig, TrainConfig
from evals.classification import load_labelled
from tasks.training.fewshot import (embed, episode_accuracies, episode_loss, fewshot_evaluation, prototypical_loss,
                                    rows_by_class, sample_episode, split_classes, train_fewshot)

KEYWORDS = ["apple", "rocket", "violin", "glacier", "tiger", "laptop", "pizza"]
FILLER = "the a report about today some people said that it was very good new old big small note".split()


def write_labelled(path, per_class: int = 10, seed: int = 0):
    """Classification rows: each class's texts carry its keyword among random filler words."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for kw in KEYWORDS:
            for i in range(per_class):
                words = rng.sample(FILLER, 5)
                words.insert(rng.randrange(6), kw)
                f.write(json.dumps({"id": f"{kw}-{i}", "source": "synthetic", "messages": [],
                                    "text": " ".join(words), "label": kw}) + "\n")
    return path


def fewshot_config(method: str = "lora", **overrides) -> TrainConfig:
    base = dict(recipe="fewshot", method=method, max_steps=15, learning_rate=3e-3, lr_scheduler="constant_with_warmup",
                warmup_fraction=0.0, max_length=32, logging_steps=5, save_steps=5,
                fewshot={"n_ways": 3, "n_shots": 2, "n_queries": 3, "meta_batch_size": 2, "held_out_classes": 3,
                         "eval_episodes": 20})
    return TrainConfig.model_validate({**base, **overrides})


class Recorder:
    def __init__(self):
        self.calls = []

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, dict(metrics)))


# ---- the objective on plain tensors --------------------------------------------------------------------------------


def test_prototypical_loss_matches_the_hand_computation():
    # prototypes: class 0 = mean([0,0],[2,0]) = [1,0]; class 1 = mean([0,2],[0,4]) = [0,3]
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    # q1 [1,1] (0): d² = 1, 5;  q2 [2,2.5] (1): d² = 7.25, 4.25;  q3 [3,0] (1): d² = 4, 18  -> q3 is misclassified
    query = torch.tensor([[1.0, 1.0], [2.0, 2.5], [3.0, 0.0]])
    loss, acc = prototypical_loss(support, torch.tensor([0, 0, 1, 1]), query, torch.tensor([0, 1, 1]), n_ways=2)
    expected = (math.log1p(math.exp(-4)) + math.log1p(math.exp(-3)) + math.log1p(math.exp(14))) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(acc) == pytest.approx(2 / 3)


def test_prototypes_classify_gaussian_clusters():
    gen = torch.Generator().manual_seed(0)
    accuracies = []
    for _ in range(20):  # 5-way 5-shot episodes of 32-d clusters: centres ~8 apart, noise 0.5 per dimension
        centres = torch.randn(5, 32, generator=gen) * 1.0
        support_labels, query_labels = torch.arange(5).repeat_interleave(5), torch.arange(5).repeat_interleave(15)
        support = centres[support_labels] + 0.5 * torch.randn(25, 32, generator=gen)
        query = centres[query_labels] + 0.5 * torch.randn(75, 32, generator=gen)
        loss, acc = prototypical_loss(support, support_labels, query, query_labels, n_ways=5)
        accuracies.append(float(acc))
    assert sum(accuracies) / len(accuracies) > 0.9
    # the same points with the labels scrambled: near chance
    _, scrambled = prototypical_loss(support, support_labels, query, query_labels[torch.randperm(75, generator=gen)], 5)
    assert float(scrambled) < 0.5


# ---- classes and episodes ------------------------------------------------------------------------------------------


def test_split_is_disjoint_seeded_and_sorted():
    labels = [c for c in "abcdefghij" for _ in range(4)]
    train, held = split_classes(labels, 3, seed=7, n_ways=2, min_rows=4)
    assert len(held) == 3 and len(train) == 7 and not set(train) & set(held)
    assert set(train) | set(held) == set("abcdefghij")
    assert train == sorted(train) and held == sorted(held)
    assert split_classes(list(reversed(labels)), 3, seed=7, n_ways=2, min_rows=4) == (train, held)
    assert {tuple(split_classes(labels, 3, seed=s)[1]) for s in range(10)} != {tuple(held)}  # the seed matters


def test_split_names_a_class_with_too_few_rows_and_too_few_classes():
    labels = ["a"] * 5 + ["b"] * 5 + ["c"] * 3 + ["d"] * 5
    with pytest.raises(ValueError, match=r"n_shots \+ n_queries = 4 rows.*'c' has 3"):
        split_classes(labels, 2, seed=0, n_ways=2, min_rows=4)
    with pytest.raises(ValueError, match="4 classes in the data, but held_out_classes=3 plus n_ways=2"):
        split_classes(labels, 3, seed=0, n_ways=2, min_rows=1)


def test_episode_rows_are_distinct_and_labelled_by_class():
    rows = [{"text": f"{c}{i}", "label": c} for c in "abcde" for i in range(6)]
    by_class = rows_by_class(rows, ["a", "b", "c", "d"])
    ep = sample_episode(by_class, n_ways=3, n_shots=2, n_queries=3, rng=random.Random(0))
    assert len(ep.support) == 6 and len(ep.query) == 9 and not set(ep.support) & set(ep.query)
    assert ep.support_labels.tolist() == [0, 0, 1, 1, 2, 2] and ep.query_labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    classes = [rows[ep.support[2 * k]]["label"] for k in range(3)]
    assert "e" not in classes and len(set(classes)) == 3
    for k, c in enumerate(classes):
        assert {rows[i]["label"] for i in ep.support[2 * k:2 * k + 2] + ep.query[3 * k:3 * k + 3]} == {c}
    again = sample_episode(by_class, 3, 2, 3, random.Random(0))
    assert (again.support, again.query) == (ep.support, ep.query)


# ---- the embedding -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = load_model(str(tiny_model_dir)).eval()
    return model, ModelRef.of(str(tiny_model_dir)).load_tokenizer()


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_embedding_ignores_padding(tiny, pooling):
    model, tokenizer = tiny
    short, long = "a short text", "a much longer text that pads the short one by several tokens"
    with torch.no_grad():
        alone = embed(model, tokenizer, [short], 32, pooling)
        batched = embed(model, tokenizer, [long, short], 32, pooling)
    assert len(tokenizer(short)["input_ids"]) + 5 < len(tokenizer(long)["input_ids"])
    assert torch.allclose(alone[0], batched[1], atol=1e-5)


def test_embedding_is_the_last_hidden_state_of_the_causal_lm(tiny):
    model, tokenizer = tiny
    enc = tokenizer(["one two three four"], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states[-1][0]
        assert torch.allclose(embed(model, tokenizer, ["one two three four"], 32, "mean")[0], hidden.mean(0), atol=1e-5)
        assert torch.allclose(embed(model, tokenizer, ["one two three four"], 32, "last")[0], hidden[-1], atol=1e-5)


def test_embedding_goes_through_lora_layers(tiny, tiny_model_dir):
    from tests.helpers import random_lora

    model, tokenizer = tiny
    _, peft_model = random_lora(tiny_model_dir)
    with torch.no_grad():
        base, adapted = embed(model, tokenizer, ["hello"], 32), embed(peft_model.eval(), tokenizer, ["hello"], 32)
        with peft_model.disable_adapter():
            disabled = embed(peft_model, tokenizer, ["hello"], 32)
    assert not torch.allclose(base, adapted, atol=1e-3)
    assert torch.allclose(base, disabled, atol=1e-5)


def test_cached_episode_accuracies_equal_episodes_embedded_one_by_one(tiny, tmp_path):
    model, tokenizer = tiny
    rows = load_labelled(write_labelled(tmp_path / "rows.jsonl"))
    fs = FewShotConfig(n_ways=3, n_shots=2, n_queries=3, held_out_classes=3)
    classes = KEYWORDS[:4]
    cached = episode_accuracies(model, tokenizer, rows, classes, fs, n_episodes=4, max_length=32, seed=3)
    rng, by_class = random.Random(3), rows_by_class(rows, classes)
    with torch.no_grad():
        direct = [float(episode_loss(model, tokenizer, [r["text"] for r in rows],
                                     sample_episode(by_class, 3, 2, 3, rng), 3, 32, "mean")[1]) for _ in range(4)]
    assert cached.tolist() == pytest.approx(direct)


# ---- meta-training and evaluation on the tiny model ----------------------------------------------------------------


def test_train_fewshot_learns_saves_and_evaluates(tiny_model_dir, tmp_path):
    from peft import PeftModel

    data = write_labelled(tmp_path / "train.jsonl")
    cfg, logger = fewshot_config("lora"), Recorder()
    result = train_fewshot(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, data, tmp_path / "out",
                           logger=logger, seed=0)

    history = json.loads(result.history_path.read_text())
    assert [h["step"] for h in history] == list(range(1, 16))
    losses = [h["loss"] for h in history]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert all(0 <= h["episode_accuracy"] <= 1 for h in history)
    assert result.recipe == "fewshot" and result.method == "lora" and result.model_dir is None
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert result.first_loss == losses[0] and result.final_loss == losses[-1]
    assert 0 < result.trainable_params < result.total_params and result.train_tokens > 0
    assert result.resumed_from is None
    assert [s for s, m in logger.calls if "train/loss" in m] == [1, 5, 10, 15]
    assert logger.calls[-1][1]["train/loss"] == pytest.approx(sum(losses[10:]) / 5)
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir()) == ["step-10.pt", "step-15.pt"]

    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert len(classes["held_out"]) == 3 and len(classes["train"]) == 4
    assert not set(classes["train"]) & set(classes["held_out"])
    assert (classes["train"], classes["held_out"]) == split_classes(KEYWORDS, 3, seed=0)

    tokenizer = ModelRef.of(str(tiny_model_dir)).load_tokenizer()
    base = load_model(str(tiny_model_dir)).eval()
    tuned = PeftModel.from_pretrained(load_model(str(tiny_model_dir)), result.adapter_dir).eval()
    with torch.no_grad():
        assert not torch.allclose(embed(base, tokenizer, ["apple"], 32), embed(tuned, tokenizer, ["apple"], 32),
                                  atol=1e-4)
    rows = load_labelled(data)
    report = fewshot_evaluation(base, tuned, tokenizer, rows, classes["held_out"], cfg.fewshot, 32, seed=0,
                                n_resamples=200)
    assert report["fewshot_chance"] == pytest.approx(1 / 3) and report["fewshot_episodes"] == 20
    for name in ("base", "tuned", "delta"):
        assert report[f"fewshot_acc_{name}_ci_low"] <= report[f"fewshot_acc_{name}"] <= report[
            f"fewshot_acc_{name}_ci_high"]
    assert report["fewshot_acc_delta"] == pytest.approx(report["fewshot_acc_tuned"] - report["fewshot_acc_base"])
    same = fewshot_evaluation(base, base, tokenizer, rows, classes["held_out"], cfg.fewshot, 32, seed=0,
                              n_resamples=200)
    assert same["fewshot_acc_base"] == report["fewshot_acc_base"]  # the same episodes every time
    assert (same["fewshot_acc_delta"], same["fewshot_acc_delta_ci_low"], same["fewshot_acc_delta_ci_high"]) == (0, 0, 0)


def test_resume_continues_exactly(tiny_model_dir, tmp_path):
    data, ref = write_labelled(tmp_path / "train.jsonl"), ModelRef.of(str(tiny_model_dir))
    straight = train_fewshot(fewshot_config(max_steps=6, save_steps=3), ref, tiny_model_dir, data, tmp_path / "a")
    train_fewshot(fewshot_config(max_steps=3, save_steps=3), ref, tiny_model_dir, data, tmp_path / "b")
    resumed = train_fewshot(fewshot_config(max_steps=6, save_steps=3), ref, tiny_model_dir, data, tmp_path / "b")
    assert resumed.resumed_from.endswith("step-3.pt")
    a, b = (json.loads(r.history_path.read_text()) for r in (straight, resumed))
    assert [h["loss"] for h in b] == pytest.approx([h["loss"] for h in a], rel=1e-5)
    assert resumed.train_tokens == straight.train_tokens


def test_full_weights_train_and_save_a_model(tiny_model_dir, tmp_path):
    data = write_labelled(tmp_path / "train.jsonl")
    result = train_fewshot(fewshot_config("full", max_steps=3, learning_rate=1e-3), ModelRef.of(str(tiny_model_dir)),
                           tiny_model_dir, data, tmp_path / "out")
    assert result.adapter_dir is None and (result.model_dir / "config.json").is_file()
    assert result.trainable_params == result.total_params
    load_model(str(result.model_dir))

