from flows.serve import deployment
from tasks.config import PipelineConfig, load_config


def test_deployment_runs_finetune_on_the_configured_cron():
    config = load_config("conf/smollm2/lora.yaml", ["schedule.cron=30 2 * * 1", "schedule.timezone=Europe/Paris"])
    dep = deployment(config)
    assert dep.name == "smollm2-lora-scheduled"
    (schedule,) = dep.schedules
    assert schedule.schedule.cron == "30 2 * * 1" and schedule.schedule.timezone == "Europe/Paris"
    assert PipelineConfig.model_validate(dep.parameters["config"]) == config  # the UI form round-trips
    assert dep.concurrency_limit == 1


def test_a_chain_config_serves_the_chain_flow():
    from tasks.config import ChainConfig

    config = load_config("conf/smollm2/sft_then_sft.yaml")
    dep = deployment(config)
    assert dep.name == "smollm2-sft-then-sft-scheduled" and "chain" in dep.tags
    assert ChainConfig.model_validate(dep.parameters["config"]) == config


def test_no_config_field_is_named_like_a_json_schema_keyword():
    """Prefect strips every nested key named `required` from a deployment's parameter schema, so a field of that
    name makes the server refuse the deployment (HTTP 422). The real server check is tests/e2e/test_serve_real.py."""
    from tasks.config import ChainConfig, PipelineConfig

    for model in (PipelineConfig, ChainConfig):
        schema = model.model_json_schema()
        for name, definition in {"root": schema, **schema.get("$defs", {})}.items():
            assert "required" not in definition.get("properties", {}), name
