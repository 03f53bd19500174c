import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tasks.packaging.promote import compare_to_champion, promote, version_metrics

NAME = "tuneforge-test"
RULES = {"champion_metrics": ["mmlu", "eval_loss"], "higher_is_better": {"mmlu": True, "eval_loss": False}}


@pytest.fixture()
def client(mlflow_uri):
    c = MlflowClient()
    c.create_registered_model(NAME)
    return c


def _register(client, metrics: dict[str, float]) -> str:
    # an explicit experiment, so an active experiment id left by another test cannot leak in
    exp = client.get_experiment_by_name("promote-test") or client.get_experiment(client.create_experiment("promote-test"))
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.log_metrics(metrics)
    return client.create_model_version(NAME, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version


def _aliases(client) -> dict[str, str]:
    return dict(client.get_registered_model(NAME).aliases)


def test_promotion_rules_over_a_sequence_of_versions(client):
    v1 = _register(client, {"mmlu": 0.30, "eval_loss": 1.5})
    r1 = promote(client, NAME, v1, {"mmlu": 0.30, "eval_loss": 1.5}, True, **RULES)
    assert r1["aliases"] == ["candidate", "champion"] and r1["reason"] == "no champion yet"
    assert _aliases(client) == {"candidate": v1, "champion": v1}

    # worse on mmlu -> candidate only
    v2 = _register(client, {"mmlu": 0.28, "eval_loss": 1.4})
    r2 = promote(client, NAME, v2, {"mmlu": 0.28, "eval_loss": 1.4}, True, **RULES)
    assert r2["aliases"] == ["candidate"] and r2["previous_champion"] == v1
    assert r2["reason"] == "worse on mmlu: 0.28 vs champion 0.3"
    assert _aliases(client) == {"candidate": v2, "champion": v1}

    # failing gate -> nothing moves, but the verdict is recorded
    v3 = _register(client, {"mmlu": 0.50, "eval_loss": 1.0})
    r3 = promote(client, NAME, v3, {"mmlu": 0.50, "eval_loss": 1.0}, False, **RULES)
    assert r3["aliases"] == [] and _aliases(client) == {"candidate": v2, "champion": v1}
    assert client.get_model_version(NAME, v3).tags["gate.passed"] == "false"

    # equal mmlu, lower loss -> takes champion
    v4 = _register(client, {"mmlu": 0.30, "eval_loss": 1.2})
    r4 = promote(client, NAME, v4, {"mmlu": 0.30, "eval_loss": 1.2}, True, **RULES)
    assert r4["aliases"] == ["candidate", "champion"] and r4["previous_champion"] == v1
    assert r4["reason"] == "better on eval_loss and no worse elsewhere"
    assert _aliases(client) == {"candidate": v4, "champion": v4}
    tags = client.get_model_version(NAME, v4).tags
    assert tags["gate.passed"] == "true" and float(tags["metric.eval_loss"]) == 1.2

    # an exact tie does not dethrone
    v5 = _register(client, {"mmlu": 0.30, "eval_loss": 1.2})
    r5 = promote(client, NAME, v5, {"mmlu": 0.30, "eval_loss": 1.2}, True, **RULES)
    assert r5["aliases"] == ["candidate"] and _aliases(client)["champion"] == v4


def test_champion_metrics_fall_back_to_its_run(client):
    v1 = _register(client, {"mmlu": 0.4, "eval_loss": 1.0})
    client.set_registered_model_alias(NAME, "champion", v1)  # set by hand, no metric tags
    assert version_metrics(client, client.get_model_version(NAME, v1)) == {"mmlu": 0.4, "eval_loss": 1.0}
    v2 = _register(client, {})
    r = promote(client, NAME, v2, {"mmlu": 0.35, "eval_loss": 0.9}, True, **RULES)
    assert r["aliases"] == ["candidate"] and r["reason"].startswith("worse on mmlu")


def test_rejects_missing_metric_or_direction(client):
    v1 = _register(client, {})
    with pytest.raises(ValueError, match="missing"):
        promote(client, NAME, v1, {"mmlu": 0.3}, True, **RULES)
    with pytest.raises(ValueError, match="direction"):
        promote(client, NAME, v1, {"mmlu": 0.3}, True, champion_metrics=["mmlu"], higher_is_better={})
    assert _aliases(client) == {}


def test_compare_to_champion_directions():
    hib = {"acc": True, "loss": False}
    assert compare_to_champion({"acc": 0.5, "loss": 1.0}, {"acc": 0.5, "loss": 1.1}, ["acc", "loss"], hib)[0]
    assert not compare_to_champion({"acc": 0.6, "loss": 1.2}, {"acc": 0.5, "loss": 1.1}, ["acc", "loss"], hib)[0]
    beats, why = compare_to_champion({"acc": 0.6}, {}, ["acc"], hib)
    assert not beats and "no value for acc" in why
