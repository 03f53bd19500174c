"""The design documents' API for the knowledge-transfer recipes, on the tiny model: thin over the recipe code."""
import pytest
from transformers import AutoModelForSequenceClassification

from tasks.training.api import EWC, DistillationTrainer, FewShotTrainer, LwF, Replay, SFTTrainer, TransferTrainer
from tasks.training.config import DistillationConfig, FewShotConfig, TrainConfig, TransferConfig
from tests.unit.training.test_classify import WORDS


def labelled(labels: dict[str, str], repeats: int) -> list[dict]:
    return [{"text": f"ticket {r}: {words} please", "label": label} for r in range(repeats)
            for label, words in labels.items()]


def test_transfer_trainer_returns_a_classifier(tiny_model_dir, tmp_path):
    train = TrainConfig(method="full", max_steps=10, learning_rate=5e-2, batch_size=4, max_length=32, epochs=10)
    result = TransferTrainer(str(tiny_model_dir), TransferConfig(freeze_encoder=True), train=train,
                             out_dir=tmp_path).train(labelled(WORDS, 6))
    model = AutoModelForSequenceClassification.from_pretrained(result.model_dir)
    assert sorted(model.config.id2label.values()) == sorted(WORDS) and result.trainable_params == 3 * 64


def test_fewshot_trainer_evaluates_on_the_query_classes(tiny_model_dir, tmp_path):
    support = labelled({f"c{i}": f"alpha{i} beta{i} gamma{i}" for i in range(4)}, 6)
    query = labelled({f"n{i}": f"delta{i} eps{i}" for i in range(2)}, 6)
    train = TrainConfig(method="lora", max_steps=3, learning_rate=3e-3, max_length=32)
    config = FewShotConfig(n_ways=2, n_shots=2, n_queries=2, meta_batch_size=1, held_out_classes=2, eval_episodes=10)
    result = FewShotTrainer(str(tiny_model_dir), config, train=train, out_dir=tmp_path).train(support, query)
    assert result.evaluation["fewshot_chance"] == 0.5 and result.evaluation["fewshot_episodes"] == 10
    import json
    assert json.loads((result.history_path.parent / "classes.json").read_text())["held_out"] == ["n0", "n1"]
    with pytest.raises(ValueError, match="new to the support set"):
        FewShotTrainer(str(tiny_model_dir), config, train=train, out_dir=tmp_path / "x").train(support, support)


def test_distillation_trainer_builds_the_student(tiny_model_dir, tmp_path, chat_path):
    train = TrainConfig(method="full", max_steps=2, learning_rate=1e-3, batch_size=4, max_length=64)
    config = DistillationConfig(temperature=4.0, alpha=0.5, loss_type="kl_div", compare_sft=False)
    result = DistillationTrainer(teacher=str(tiny_model_dir), config=config, train=train,
                                 out_dir=tmp_path).train(str(chat_path))
    from transformers import AutoConfig
    assert AutoConfig.from_pretrained(result.model_dir).num_hidden_layers == 1


def test_continual_options_attach_to_any_trainer(tiny_model_dir, chat_path):
    assert SFTTrainer(str(tiny_model_dir), continual=EWC(chat_path, ewc_lambda=5.0)).cfg.continual.ewc_lambda == 5.0
    assert SFTTrainer(str(tiny_model_dir), continual=Replay(chat_path, 0.3)).cfg.continual.replay_fraction == 0.3
    assert SFTTrainer(str(tiny_model_dir), continual=LwF(alpha=0.5)).cfg.continual.strategy == "lwf"
