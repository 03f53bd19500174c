"""Start a run from a previous output (`model.init_from`): a package folder, an MLflow model URI, or (in a chain)
an earlier stage, which the chain flow replaces by that stage's package folder before the stage runs.

An adapter is folded into its own base (in float32, then cast to `model.dtype`) and saved as a plain model folder,
so the new stage trains a fresh adapter on top of the previous result, and a recipe's reference model (the base with
the adapter disabled) is exactly the previous stage's model. Full-weight packages are used as they are.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tasks.model import ModelRef, torch_dtype
from tasks.training.bottleneck import is_bottleneck
from tasks.training.loading import VirtualTokensLM, load_trained

LINEAGE = "base_model.json"  # written into every package: the reference its adapter applies to


class InitFromError(ValueError):
    pass


def resolve_model(cfg, out_dir: Path, tracking_uri: str | None = None) -> ModelRef:
    """The `model:` section as a ModelRef; with `init_from`, the previous output made loadable under `out_dir`."""
    if cfg.init_from is None:
        return ModelRef.of(cfg.name_or_path, cfg.dtype, cfg.trust_remote_code)
    ref = cfg.init_from
    source = fetch(ref, Path(out_dir) / "download", tracking_uri)
    return materialize(source, ref, cfg, Path(out_dir))


def fetch(ref: str, dst: Path, tracking_uri: str | None = None) -> Path:
    """A local folder holding the reference: the folder itself, or the MLflow artifacts downloaded to `dst`."""
    if ref.startswith("stage:"):
        raise InitFromError(f"model.init_from={ref}: a stage reference works only inside a chain config "
                            f"(`stages:`), where that stage runs first")
    if ":/" not in ref:
        path = Path(ref)
        if not path.is_dir():
            raise InitFromError(f"model.init_from={ref}: no such folder (expected a package folder written by the "
                                f"package stage, e.g. runs/runs/<run id>/package/adapter)")
        return path
    from mlflow.exceptions import MlflowException
    from mlflow.artifacts import download_artifacts

    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    try:
        return Path(download_artifacts(artifact_uri=ref, dst_path=str(dst), tracking_uri=tracking_uri,
                                       registry_uri=tracking_uri))
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InitFromError(f"model.init_from={ref}: not found in MLflow at {tracking_uri or 'the default URI'} "
                            f"({first})") from err


def _parts(source: Path) -> tuple[Path | None, Path | None, Path | None, dict]:
    """(adapter folder, full model folder, tokenizer folder, base reference) of a package or pyfunc folder."""
    if (source / "MLmodel").is_file():  # an MLflow pyfunc model saved by the package stage
        flavor = yaml.safe_load((source / "MLmodel").read_text())["flavors"]["python_function"]
        files = {name: source / a["path"] for name, a in (flavor.get("artifacts") or {}).items()}
        config = flavor.get("config") or {}
        base = {"name_or_path": config.get("base_model"), "trust_remote_code": config.get("trust_remote_code", False)}
        return files.get("adapter"), files.get("model"), files.get("tokenizer"), base
    if (source / "adapter_config.json").is_file():
        lineage = source / LINEAGE
        if lineage.is_file():
            base = json.loads(lineage.read_text())
        else:  # an adapter from elsewhere: PEFT records the base it was trained on
            base = {"name_or_path": json.loads((source / "adapter_config.json").read_text())["base_model_name_or_path"]}
        tokenizer = source / "tokenizer"
        return source, None, tokenizer if tokenizer.is_dir() else None, base
    if (source / "config.json").is_file() and any(source.glob("*.safetensors")):
        return None, source, source, {}
    raise InitFromError(f"model.init_from: {source} holds neither an adapter (adapter_config.json), a model "
                        f"(config.json + safetensors) nor an MLflow model (MLmodel)")


def materialize(source: Path, ref: str, cfg, out_dir: Path) -> ModelRef:
    """A plain model folder for `source`: full weights as they are, an adapter folded into its base."""
    adapter, model, tokenizer, base = _parts(source)
    if model is not None:
        return ModelRef(name_or_path=str(model.resolve()), path=str(model.resolve()), dtype=cfg.dtype,
                        trust_remote_code=cfg.trust_remote_code, init_from=ref)
    if not base.get("name_or_path"):
        raise InitFromError(f"model.init_from={ref}: the adapter does not say which base model it belongs to")
    trust = cfg.trust_remote_code or bool(base.get("trust_remote_code"))
    # fold in float32 (bf16 rounds small updates away); a recorded Hub id of the embedded model is its local copy
    base_ref = ModelRef.recorded(base["name_or_path"], "float32", trust)
    merged, tok = load_trained(base_ref, tokenizer or base_ref.path, adapter_dir=adapter)
    if isinstance(merged, VirtualTokensLM) or is_bottleneck(merged):
        raise InitFromError(f"model.init_from={ref}: a prompt-learning or bottleneck adapter "
                            f"({merged.active_peft_config.peft_type.value}) cannot be folded into the weights; start from a "
                            "LoRA-family or full-weight output")
    out = out_dir / "model"
    tmp = out.with_name("model.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.to(torch_dtype(cfg.dtype)).save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "init_from.json").write_text(json.dumps({"init_from": ref, "source": str(source), "base": base}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return ModelRef(name_or_path=str(out.resolve()), path=str(out.resolve()), dtype=cfg.dtype,
                    trust_remote_code=trust, init_from=ref)


def model_folder(ref: str, dst: Path, tracking_uri: str | None = None) -> Path:
    """A folder holding full model weights (a reward model, say) for `ref`: itself, its package, or its MLflow
    model (downloaded to `dst`). Anything else is taken for a hub id and passed through for transformers."""
    if ref.startswith("stage:"):
        raise InitFromError(f"{ref}: a stage reference works only inside a chain config (`stages:`), where that "
                            "stage runs first")
    if ":/" not in ref and not Path(ref).exists():
        return Path(ref)
    _, model, _, _ = _parts(fetch(ref, Path(dst), tracking_uri))
    if model is None:
        raise InitFromError(f"{ref}: holds an adapter, not a whole model")
    return model
