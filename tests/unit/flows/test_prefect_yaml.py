"""prefect.yaml against conf/: what `prefect deploy` would create from each entry (its build step run, then Prefect's
own templating) is the conf file's run name, cron and timezone, on the local pool, running the conf-loading flow.
The real server, worker and run: tests/e2e/test_work_pool_real.py."""
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.utilities.importtools import import_object
from prefect.utilities.templating import apply_values

import flows.deploy
from flows.cli import flow_name
from flows.deploy import POOL, check_server, conf_schedule, run_conf
from tasks.config import load_config
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[3]
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in PREFECT_YAML["deployments"]}


def as_deployed(deployment: dict) -> tuple[dict, str]:
    """The entry as `prefect deploy` templates it, and its conf file: each build step imported by name and called
    (Prefect's run_steps does the same, but also asks the API to resolve blocks), its outputs stored under its id and
    merged at the top level, then `{{ ... }}` filled by Prefect's apply_values."""
    outputs = {}
    for step in deployment["build"]:
        ((fqn, inputs),) = step.items()
        inputs = dict(inputs)
        step_id = inputs.pop("id")
        output = import_object(fqn)(**inputs)
        outputs[step_id] = output
        outputs.update(output)
    body = {k: v for k, v in deployment.items() if k != "build"}
    return apply_values(body, outputs), deployment["build"][0]["flows.deploy.conf_schedule"]["config"]


def test_prefect_reads_every_deployment_of_the_file():
    """A file Prefect's model rejects is skipped by `prefect deploy` with a warning, deploying nothing."""
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(PREFECT_YAML)
    assert [d.name for d in model.deployments] == ["smollm2-lora", "smollm2-sft-dpo", "smollm2-sft-then-sft",
                                                   "smollm2-rlhf"]
    assert all(d.entrypoint == "flows/deploy.py:run_conf" for d in model.deployments)


@pytest.mark.parametrize("name", list(DEPLOYMENTS))
def test_each_deployment_is_its_conf_file(name):
    deployed, path = as_deployed(DEPLOYMENTS[name])
    config = load_config(ROOT / path)
    assert (ROOT / path).is_file() and not Path(path).is_absolute()  # relative to the pull step's project root
    assert deployed["name"] == config.run_name == name
    assert deployed["parameters"] == {"config": path, "overrides": []}
    (schedule,) = deployed["schedules"]
    assert schedule == {"cron": config.schedule.cron, "timezone": config.schedule.timezone}
    CronSchedule(**schedule)  # what Prefect builds from it: a bad cron or zone fails here, not at deploy time
    assert deployed["work_pool"]["name"] == POOL and deployed["concurrency_limit"] == 1


def test_the_finetune_flow_and_the_chains_are_deployed():
    flows_run = {name: flow_name(load_config(ROOT / as_deployed(d)[1])) for name, d in DEPLOYMENTS.items()}
    assert flows_run == {"smollm2-lora": "finetune", "smollm2-sft-dpo": "chain", "smollm2-sft-then-sft": "chain",
                         "smollm2-rlhf": "chain"}


def test_the_cron_follows_the_conf_file(tmp_path):
    """No cron lives in prefect.yaml: a changed conf file changes what the next `prefect deploy` creates."""
    conf = tmp_path / "weekly.yaml"
    conf.write_text(yaml.safe_dump({"base": str(ROOT / "conf/smollm2/lora.yaml"), "run_name": "weekly",
                                    "schedule": {"cron": "30 2 * * 1", "timezone": "Europe/Paris"}}))
    entry = {**DEPLOYMENTS["smollm2-lora"], "build": [{"flows.deploy.conf_schedule": {"id": "conf",
                                                                                        "config": str(conf)}}]}
    deployed, _ = as_deployed(entry)
    assert deployed["schedules"] == [{"cron": "30 2 * * 1", "timezone": "Europe/Paris"}]
    assert deployed["parameters"]["config"] == str(conf)


def test_the_pull_step_and_the_entrypoint_resolve():
    from prefect.flows import load_flow_from_entrypoint

    ((fqn, inputs),) = PREFECT_YAML["pull"][0].items()
    assert import_object(fqn).__name__ == "set_working_directory" and inputs == {"directory": "{{ $PWD }}"}
    flow = load_flow_from_entrypoint(str(ROOT / "flows/deploy.py") + ":run_conf")
    assert flow.name == "tuneforge"
    schema = flow.parameters.model_dump()
    assert schema["required"] == ["config"] and schema["properties"]["overrides"]["items"] == {"type": "string"}


def test_run_conf_loads_the_file_with_its_overrides_and_runs_the_flow_it_describes(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(flows.deploy.terminal, "quiet_libraries", lambda: None)  # it imports transformers
    monkeypatch.setattr(flows.deploy, "flow_for", lambda config: lambda c: ran.append(c) or {"ok": flow_name(c)})
    monkeypatch.chdir(ROOT)
    result = run_conf.fn("conf/smollm2/sft_then_sft.yaml", ["train.max_steps=7", f"run_root={tmp_path}",
                                                           f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    (config,) = ran
    assert result == {"ok": "chain"} and config.run_name == "smollm2-sft-then-sft"
    assert {s.train.max_steps for s in config.stages.values()} == {7}


def test_conf_schedule_reports_a_bad_conf_file_by_name(tmp_path):
    from tasks.config import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule: {cronn: '0 3 * * *'}\n")
    with pytest.raises(ConfigError, match="cronn"):
        conf_schedule(str(bad))


def test_check_server_names_the_url_and_what_to_start():
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    problem = check_server(url, timeout=1)
    assert url in problem and "make ui" in problem and "make services" in problem
    assert "PREFECT_API_URL is not set" in check_server(None)
    assert flows.deploy.main(["nonsense"]) == 2
