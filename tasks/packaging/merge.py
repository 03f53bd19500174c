"""Merge what training produced into what ships: fold an adapter into its base, combine several
adapters (PEFT's TIES/DARE/linear/SVD task arithmetic), or average checkpoints of one run (model soup).

Merging always runs in float32 and casts at the end: folding `B @ A` into bfloat16 weights directly
rounds away most of a small LoRA update. All outputs are safetensors with the tokenizer beside them,
so every output folder loads on its own.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tasks.model import DType, ModelRef, torch_dtype
from tasks.schema import Section

MergeMethod = Literal["linear", "ties", "dare_linear", "dare_ties", "svd", "fusion"]
_NEEDS_DENSITY = {"ties", "dare_linear", "dare_ties"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Files copied from the first checkpoint into a soup: configs and tokenizer, never optimizer state.
_SOUP_COPY_SUFFIXES = {".json", ".jinja", ".txt", ".model"}
_SOUP_SKIP = {"trainer_state.json"}


class MergeConfig(Section):
    """How `package` combines adapters or checkpoints before export (see `run_merge`)."""

    method: MergeMethod | Literal["soup"] = Field(
        "ties", description="ties/dare_* prune conflicting deltas; linear averages; svd re-factorises exactly; "
        "fusion sums bottleneck adapters' outputs with the weights (exact, one wider adapter); soup averages "
        "checkpoints of one run."
    )
    sources: list[Path] = Field(min_length=1, description="Adapter folders, or checkpoint folders for soup.")
    weights: list[float] | None = Field(None, description="One weight per source (not used by soup).")
    density: float | None = Field(
        None, gt=0.0, le=1.0, description="Fraction of each delta kept by ties/dare_*; lower = sparser, less interference."
    )
    majority_sign_method: Literal["total", "frequency"] = "total"
    svd_rank: int | None = Field(None, ge=1, description="Rank of an svd merge; default the largest input rank.")
    fold_into_base: bool = Field(False, description="Also fold the resulting adapter into the base model.")
    dtype: DType = Field("bfloat16", description="dtype of a folded full model; half the size of float32.")

    @model_validator(mode="after")
    def _check(self) -> MergeConfig:
        if self.method == "soup":
            if self.weights is not None:
                raise ValueError("soup averages uniformly; remove `weights`")
            if len(self.sources) < 2:
                raise ValueError("soup needs at least two checkpoints")
            return self
        if len(self.sources) > 1 and self.weights is None:
            raise ValueError(f"{self.method} needs one weight per source")
        if self.weights is not None and len(self.weights) != len(self.sources):
            raise ValueError(f"{len(self.weights)} weights for {len(self.sources)} sources")
        if self.method == "fusion" and self.fold_into_base:
            raise ValueError("fusion: bottleneck adapters are nonlinear and cannot be folded into the base; "
                             "set fold_into_base: false")
        if self.method in _NEEDS_DENSITY and len(self.sources) > 1 and self.density is None:
            raise ValueError(f"{self.method} needs `density`")
        return self


def _tokenizer(adapter_dir: Path, base: ModelRef):
    """The adapter's own tokenizer when training saved one (it may carry added tokens), else the base's."""
    own = all((Path(adapter_dir) / f).is_file() for f in _TOKENIZER_FILES)
    return base.load_tokenizer(adapter_dir if own else None)


def _load_base_for(base: ModelRef, tokenizer):
    """Base model in float32, grown to the tokenizer's vocabulary when training added tokens."""
    model = base.model_copy(update={"dtype": "float32"}).load_model()
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model


def merge_adapter(base: ModelRef, adapter_dir: Path, out_dir: Path, dtype: DType | None = None) -> Path:
    """Fold a PEFT adapter into its base (merge_and_unload) and save a plain model + tokenizer in `dtype`
    (default: the base's)."""
    from peft import PeftModel

    tokenizer = _tokenizer(adapter_dir, base)
    model = PeftModel.from_pretrained(_load_base_for(base, tokenizer), str(adapter_dir))
    merged = model.merge_and_unload(safe_merge=True)  # safe_merge refuses NaNs instead of shipping them
    merged = merged.to(torch_dtype(dtype or base.dtype))
    out_dir = Path(out_dir)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def merge_adapters(
    base: ModelRef,
    adapter_dirs: list[Path],
    weights: list[float],
    method: MergeMethod,
    density: float | None,
    out_dir: Path,
    *,
    majority_sign_method: Literal["total", "frequency"] = "total",
    svd_rank: int | None = None,
) -> Path:
    """Combine LoRA adapters of the same base with PEFT's `add_weighted_adapter`; save the new adapter.

    linear/ties/dare_* need equal ranks; ties/dare_* need `density`. The result is saved as the
    default adapter, so `PeftModel.from_pretrained(base, out_dir)` loads it directly.
    """
    from peft import PeftModel

    if len(adapter_dirs) != len(weights):
        raise ValueError(f"{len(weights)} weights for {len(adapter_dirs)} adapters")
    if method in _NEEDS_DENSITY and density is None:
        raise ValueError(f"{method} needs `density`")
    tokenizer = _tokenizer(adapter_dirs[0], base)
    names = [f"source_{i}" for i in range(len(adapter_dirs))]
    model = PeftModel.from_pretrained(_load_base_for(base, tokenizer), str(adapter_dirs[0]), adapter_name=names[0])
    for name, adapter_dir in zip(names[1:], adapter_dirs[1:]):
        model.load_adapter(str(adapter_dir), adapter_name=name)
    model.add_weighted_adapter(
        adapters=names, weights=list(weights), adapter_name="default", combination_type=method,
        density=density, majority_sign_method=majority_sign_method, svd_rank=svd_rank,
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, selected_adapters=["default"])  # "default" saves at the folder root
    tokenizer.save_pretrained(out_dir)
    return out_dir


def model_soup(checkpoint_dirs: list[Path], out_dir: Path) -> Path:
    """Uniformly average the safetensors weights of several checkpoints of one run.

    Works for adapter checkpoints and full (also sharded) ones alike: every checkpoint must hold the
    same weight files with the same tensor names and shapes. Floats are averaged in float32 and cast
    back; non-float tensors must agree and are kept. Configs and tokenizer come from the first checkpoint.
    """
    dirs = [Path(d) for d in checkpoint_dirs]
    if len(dirs) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    files = sorted(p.name for p in dirs[0].glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {dirs[0]}")
    for d in dirs[1:]:
        other = sorted(p.name for p in d.glob("*.safetensors"))
        if other != files:
            raise ValueError(f"{d} holds weight files {other}, expected {files} as in {dirs[0]}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    import torch  # on use: tasks.config imports MergeConfig, and loading a config must stay light
    from safetensors.torch import load_file, save_file

    for name in files:
        first = load_file(dirs[0] / name)
        acc = {k: t.to(torch.float32) if t.is_floating_point() else t for k, t in first.items()}
        for d in dirs[1:]:
            tensors = load_file(d / name)
            if tensors.keys() != first.keys():
                diff = sorted(set(tensors) ^ set(first))
                raise ValueError(f"{d / name} has different tensors than {dirs[0] / name}: {diff[:5]}")
            for key, tensor in tensors.items():
                if tensor.shape != first[key].shape:
                    raise ValueError(f"{key}: shape {tuple(tensor.shape)} in {d}, {tuple(first[key].shape)} in {dirs[0]}")
                if tensor.is_floating_point():
                    acc[key] += tensor.to(torch.float32)
                elif not torch.equal(tensor, first[key]):
                    raise ValueError(f"{key}: non-float tensor differs between checkpoints")
        averaged = {
            k: (acc[k] / len(dirs)).to(first[k].dtype) if first[k].is_floating_point() else acc[k] for k in first
        }
        save_file(averaged, out_dir / name, metadata={"format": "pt"})
    for path in dirs[0].iterdir():
        if path.is_file() and path.suffix in _SOUP_COPY_SUFFIXES and path.name not in _SOUP_SKIP:
            shutil.copy2(path, out_dir / path.name)
    return out_dir


def run_merge(cfg: MergeConfig, base: ModelRef, out_dir: Path) -> Path:
    """Apply a MergeConfig: combine the sources (into `out_dir/adapter` or `out_dir/soup`), then optionally
    fold the result into the base (`out_dir/model`). Returns the folder that ships."""
    out_dir = Path(out_dir)
    if cfg.method == "soup":
        combined = model_soup(cfg.sources, out_dir / "soup")
    elif len(cfg.sources) == 1:
        combined = cfg.sources[0]
    elif cfg.method == "fusion":
        from tasks.training.bottleneck import fuse_adapters

        combined = fuse_adapters(cfg.sources, cfg.weights, out_dir / "adapter")
    else:
        combined = merge_adapters(
            base, cfg.sources, cfg.weights, cfg.method, cfg.density, out_dir / "adapter",
            majority_sign_method=cfg.majority_sign_method, svd_rank=cfg.svd_rank,
        )
    if not cfg.fold_into_base:
        return combined
    if not (Path(combined) / "adapter_config.json").is_file():
        raise ValueError(f"fold_into_base needs an adapter, but {combined} holds full weights")
    return merge_adapter(base, combined, out_dir / "model", cfg.dtype)
