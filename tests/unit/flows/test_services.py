"""`flows.services` without starting anything: its config's validation names the key, and the servers' command
lines keep the database password off the command line (only the environment carries it)."""
from pathlib import Path

import pytest

from flows.services import Services, main
from flows.services_config import DEFAULT_CONF, load_services_config
from tasks.config import ConfigError


def test_the_shipped_config_loads_with_ports_apart_from_make_ui():
    config = load_services_config()
    assert DEFAULT_CONF.name == "services.yml" and DEFAULT_CONF.read_text().startswith("# make services")
    assert (config.root, config.host) == (Path("runs/services"), "127.0.0.1")
    assert (config.postgres.port, config.mlflow.port, config.prefect.port) == (5433, 5001, 4201)
    assert config.mlflow.workers == 1 and config.mlflow.artifacts_destination is None


@pytest.mark.parametrize("override, message", [
    ("host=0.0.0.0", "host: Value error, must be a loopback address"),
    ("mlflow.port=5433", "the three ports must differ"),
    ("prefect.port=80", "prefect.port: Input should be greater than or equal to 1024"),
    ("postgres.user=Robert'); DROP", "postgres.user: Value error, must be lower-case letters"),
    ("mlflow.artifacts_destination=gs://bucket", "mlflow.artifacts_destination: Value error, must be a local folder"),
    ("mlflow.s3_endpoint_url=http://127.0.0.1:9000", "mlflow.s3_endpoint_url: Value error, only for an s3://"),
    ("mlflow.prot=5002", "mlflow.prot: unknown key (did you mean mlflow.port?)"),
])
def test_a_bad_value_is_an_error_naming_its_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_services_config(overrides=[override])
    assert message in str(err.value)


def test_the_command_line_reports_a_config_error_with_exit_2(capsys):
    assert main(["status", "postgres.port=x"]) == 2
    assert "postgres.port: Input should be a valid integer" in capsys.readouterr().err


def test_servers_get_the_store_urls_through_the_environment_only(tmp_path):
    services = Services(load_services_config(overrides=[f"root={tmp_path}", "mlflow.port=5009"]))
    services.pg_dir.mkdir()
    services.password_file.write_text("s3cret\n")
    (mlflow_cmd, mlflow_env), (prefect_cmd, prefect_env) = services.servers()["mlflow"], services.servers()["prefect"]
    assert mlflow_cmd[1:] == ["server", "--host", "127.0.0.1", "--port", "5009", "--workers", "1",
                              "--artifacts-destination", str(tmp_path / "mlflow-artifacts")]
    assert prefect_cmd[1:] == ["server", "start", "--host", "127.0.0.1", "--port", "4201"]
    assert not any("s3cret" in part for part in mlflow_cmd + prefect_cmd)
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg2://tuneforge:s3cret@127.0.0.1:5433/mlflow"
    assert mlflow_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert prefect_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://tuneforge:s3cret@127.0.0.1:5433/prefect")
    assert services.exports() == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5009",
                                  "PREFECT_API_URL": "http://127.0.0.1:4201/api"}


def test_status_and_stop_of_a_folder_that_never_started_anything(tmp_path, capsys):
    assert main(["stop", f"root={tmp_path / 'none'}"]) == 0
    assert capsys.readouterr().out == "nothing was running\n"
    assert main(["status", f"root={tmp_path / 'none'}"]) == 0
    assert capsys.readouterr().out.split() == ["PostgreSQL", "stopped", "MLflow", "stopped", "Prefect", "stopped"]
