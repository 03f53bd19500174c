"""The typed config of `make services` (conf/services.yml): where the cluster and the servers' files live, their ports,
and where MLflow keeps artifacts. Validated on load, with messages that name the key, like the pipeline's config."""
from __future__ import annotations

import importlib.util
import ipaddress
import re
import shutil
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tasks.config import _read, _validate, apply_override
from tasks.schema import Section

DEFAULT_CONF = Path(__file__).resolve().parents[1] / "conf" / "services.yml"


def _port(default: int):
    """An unprivileged port: nothing here needs root to listen."""
    return Field(default, ge=1024, le=65535)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # a PostgreSQL name that needs no quoting anywhere


class PostgresConfig(Section):
    bin_dir: Path | None = None
    """Folder with initdb, pg_ctl and postgres. Default: the newest /usr/lib/postgresql/<version>/bin (Debian), else
    the folder of `pg_ctl` on PATH."""
    port: int = _port(5433)
    user: str = "tuneforge"
    """The cluster's owner role, created by initdb with a generated password (kept in <root>/postgres/password)."""
    os_user: str = "postgres"
    """The account that owns and runs the cluster when started as root: initdb and postgres refuse to run as root."""
    mlflow_database: str = "mlflow"
    prefect_database: str = "prefect"

    @field_validator("user", "mlflow_database", "prefect_database")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be lower-case letters, digits and _ (a PostgreSQL name that needs no quoting)")
        return value

    def binaries(self) -> Path | None:
        """The folder holding initdb, pg_ctl and postgres, or None when PostgreSQL is not installed."""
        if self.bin_dir is not None:
            return self.bin_dir if (self.bin_dir / "pg_ctl").is_file() else None
        debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3])
                        if p.parts[-3].isdigit() else 0)
        if debian:
            return debian[-1].parent
        on_path = shutil.which("pg_ctl")
        return Path(on_path).parent if on_path else None


class MlflowServerConfig(Section):
    port: int = _port(5001)
    workers: int = Field(1, ge=1)
    """Uvicorn workers. One, with job execution off, is ~0.5 GB; MLflow's default of 4 plus job runners is ~3 GB."""
    artifacts_destination: str | None = None
    """Where the server stores artifacts (clients upload through it): a local folder, default <root>/mlflow-artifacts,
    or `s3://bucket/prefix` on S3 or an S3-compatible store (needs boto3 in the server's environment)."""
    s3_endpoint_url: str | None = None
    """The S3-compatible store's URL (MinIO, Ceph: `http://127.0.0.1:9000`), given to the server as
    MLFLOW_S3_ENDPOINT_URL. Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""

    @field_validator("artifacts_destination")
    @classmethod
    def _local_or_s3(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        if not value.startswith("s3://") or len(value) <= len("s3://"):
            raise ValueError("must be a local folder or s3://bucket[/prefix]")
        if importlib.util.find_spec("boto3") is None:
            raise ValueError("an s3:// destination needs boto3 in this environment (.venv/bin/pip install "
                             "boto3); it is not a project dependency because the local default needs none")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_needs_s3(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and not (info.data.get("artifacts_destination") or "").startswith("s3://"):
            raise ValueError("only for an s3:// mlflow.artifacts_destination")
        return value


class PrefectServerConfig(Section):
    port: int = _port(4201)


class ServicesConfig(Section):
    """PostgreSQL, an MLflow tracking server and a Prefect server on loopback (`make services`)."""

    root: Path = Path("runs/services")
    """The cluster, the servers' logs and pids, env.mk and local artifacts. The `postgres` account must be able to
    search every folder above it when started as root."""
    host: str = "127.0.0.1"
    """Where all three listen: a loopback address, since none of them has authentication in front of it."""
    startup_timeout_s: float = Field(180.0, gt=0)
    """How long to wait for each server to answer. A cold Prefect start migrates its fresh database (~1 min)."""
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    mlflow: MlflowServerConfig = Field(default_factory=MlflowServerConfig)
    prefect: PrefectServerConfig = Field(default_factory=PrefectServerConfig)

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        try:
            loopback = ipaddress.ip_address(value).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError("must be a loopback address such as 127.0.0.1: the servers have no authentication")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self):
        ports = {"postgres.port": self.postgres.port, "mlflow.port": self.mlflow.port,
                 "prefect.port": self.prefect.port}
        if len(set(ports.values())) < len(ports):
            raise ValueError(f"the three ports must differ: {ports}")
        return self


def load_services_config(path: str | Path = DEFAULT_CONF, overrides: list[str] | tuple[str, ...] = ()
                         ) -> ServicesConfig:
    """conf/services.yml (or `path`) with `key=value` overrides, validated; a ConfigError names the key."""
    path = Path(path)
    raw = _read(path)
    for override in overrides:
        apply_override(raw, override)
    return _validate(ServicesConfig, raw, path)
