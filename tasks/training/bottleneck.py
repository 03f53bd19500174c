"""Bottleneck adapters (Houlsby / Pfeiffer) as a PEFT method: `h + up(act(down(h)))` on a sublayer's output.

Why our own: PEFT has no bottleneck adapters, and AdapterHub's `adapters` library pins transformers 4.57, which
conflicts with our transformers 5.x. So this is a compact implementation registered with PEFT through
`register_peft_method`; get_peft_model, save_pretrained / PeftModel.from_pretrained, `disable_adapter()` (the DPO/PPO
reference) and trainable-parameter bookkeeping then come from PEFT unchanged.

PEFT only registers names that are members of its closed `PeftType` enum, so importing this module adds
`PeftType.BOTTLENECK` and registers the method; import it before `PeftModel.from_pretrained` on a bottleneck
folder. A loaded model is one of ours when `is_bottleneck(model)`, i.e. `peft_config.peft_type == "BOTTLENECK"`.

The adapter is nonlinear, so it cannot be folded into the base weights: merge / merge_and_unload raise, and the
model is served as the unmerged PeftModel (`unload()` still drops the adapters).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from peft import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, _get_in_out_features
from peft.utils.peft_types import PeftType, register_peft_method
from safetensors.torch import load_file, save_file
from torch import nn

from tasks.training.method_config import BottleneckConfig

PEFT_TYPE = "BOTTLENECK"
VARIANT_TARGETS = {"houlsby": ["o_proj", "down_proj"], "pfeiffer": ["down_proj"]}
"""Sublayer outputs that get an adapter, before the residual add: attention output + FFN output, or FFN only."""
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
_NOT_MERGEABLE = ("bottleneck adapters are nonlinear and cannot be merged into the base weights: serve the "
                  "PeftModel unmerged (unload() removes them instead)")


def bottleneck_width(hidden_size: int, reduction_factor: int) -> int:
    width = hidden_size // reduction_factor
    if width < 1:
        raise ValueError(f"reduction_factor {reduction_factor} leaves no bottleneck for hidden size {hidden_size}")
    return width


@dataclass
class BottleneckPeftConfig(PeftConfig):
    """PEFT config; `target_modules` defaults from `variant`. `bottleneck_size`, when set, overrides
    `reduction_factor` (fused adapters have a width that is no integral fraction of the hidden size)."""

    variant: str = field(default="houlsby", metadata={"help": "houlsby (o_proj + down_proj) or pfeiffer (down_proj)"})
    reduction_factor: int = field(default=16, metadata={"help": "bottleneck width = out_features // reduction_factor"})
    bottleneck_size: Optional[int] = field(default=None, metadata={"help": "explicit width, overrides the factor"})
    non_linearity: str = field(default="relu", metadata={"help": "relu, gelu, silu or tanh"})
    target_modules: Optional[Union[list[str], str]] = field(default=None, metadata={"help": "default: from variant"})
    exclude_modules: Optional[Union[list[str], str]] = field(default=None)
    modules_to_save: Optional[list[str]] = field(default=None)

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = PeftType.BOTTLENECK
        if self.variant not in VARIANT_TARGETS:
            raise ValueError(f"variant must be one of {sorted(VARIANT_TARGETS)}, got {self.variant!r}")
        if self.non_linearity not in ACTIVATIONS:
            raise ValueError(f"non_linearity must be one of {sorted(ACTIVATIONS)}, got {self.non_linearity!r}")
        if self.reduction_factor < 1 or (self.bottleneck_size is not None and self.bottleneck_size < 1):
            raise ValueError("reduction_factor and bottleneck_size must be positive")
        if self.target_modules is None:
            self.target_modules = list(VARIANT_TARGETS[self.variant])

    def width(self, features: int) -> int:
        return self.bottleneck_size or bottleneck_width(features, self.reduction_factor)


class BottleneckLayer(nn.Module, BaseTunerLayer):
    """Wraps a target module: output + up(act(down(output))) per active adapter (several active ones stack)."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_act",)

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: BottleneckPeftConfig):
        super().__init__()
        self.base_layer = base_layer
        _, self.out_features = _get_in_out_features(base_layer)
        if self.out_features is None:
            raise ValueError(f"bottleneck adapters need a layer with out_features, got {type(base_layer).__name__}")
        self.bottleneck_down = nn.ModuleDict()
        self.bottleneck_up = nn.ModuleDict()
        self.bottleneck_act = nn.ModuleDict()
        self.merged_adapters = []
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: BottleneckPeftConfig) -> None:
        width = config.width(self.out_features)
        self.bottleneck_down[adapter_name] = nn.Linear(self.out_features, width)
        self.bottleneck_up[adapter_name] = up = nn.Linear(width, self.out_features)
        nn.init.zeros_(up.weight)  # adapter starts as the identity: the wrapped model equals the base
        nn.init.zeros_(up.bias)
        self.bottleneck_act[adapter_name] = ACTIVATIONS[config.non_linearity]()
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        for name in self.active_adapters:
            if name not in self.bottleneck_down:
                continue
            down = self.bottleneck_down[name]  # may be float32 over a bf16 base (PEFT upcasts adapters)
            h = down(result.to(down.weight.dtype))
            result = result + self.bottleneck_up[name](self.bottleneck_act[name](h)).to(result.dtype)
        return result

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        raise ValueError(_NOT_MERGEABLE)

    def unmerge(self) -> None:
        """Nothing is ever merged."""

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()


class BottleneckModel(BaseTuner):
    """The tuner PEFT instantiates for `BottleneckPeftConfig`; targets come from the config, not a model table."""

    prefix: str = "bottleneck_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict[str, list[str]] = {}

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, BottleneckLayer):
            target.update_layer(adapter_name, peft_config)
            return
        new_module = BottleneckLayer(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _check_merge_allowed(self):
        raise ValueError(_NOT_MERGEABLE)


def _register() -> None:
    """Add BOTTLENECK to PeftType (a closed enum: register_peft_method refuses unknown names) and register."""
    if PEFT_TYPE not in PeftType.__members__:
        member = str.__new__(PeftType, PEFT_TYPE)
        member._name_ = member._value_ = PEFT_TYPE
        member.__objclass__ = PeftType
        type.__setattr__(PeftType, PEFT_TYPE, member)  # EnumType.__setattr__ forbids it; the class dict holds members
        PeftType._member_names_.append(PEFT_TYPE)
        PeftType._member_map_[PEFT_TYPE] = member
        PeftType._value2member_map_[PEFT_TYPE] = member
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    if PeftType.BOTTLENECK in PEFT_TYPE_TO_TUNER_MAPPING:  # module reloaded: point PEFT at the new classes
        PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.BOTTLENECK] = BottleneckPeftConfig
        PEFT_TYPE_TO_TUNER_MAPPING[PeftType.BOTTLENECK] = BottleneckModel
    else:
        register_peft_method(name="bottleneck", config_cls=BottleneckPeftConfig, model_cls=BottleneckModel,
                             prefix=BottleneckModel.prefix)


_register()


def peft_config(cfg: BottleneckConfig) -> BottleneckPeftConfig:
    return BottleneckPeftConfig(variant=cfg.variant, reduction_factor=cfg.reduction_factor,
                                non_linearity=cfg.non_linearity, task_type="CAUSAL_LM")


def is_bottleneck(model) -> bool:
    """True for a PeftModel (or tuner) carrying bottleneck adapters: keep it unmerged."""
    configs = getattr(model, "peft_config", None) or {}
    return any(c.peft_type == PEFT_TYPE for c in configs.values())


def bottleneck_parameter_count(hidden_size: int, n_layers: int, cfg: BottleneckConfig) -> int:
    """Trainable parameters on a Llama-style model: per adapter down (h*r + r) + up (r*h + h)."""
    r = bottleneck_width(hidden_size, cfg.reduction_factor)
    return n_layers * len(VARIANT_TARGETS[cfg.variant]) * (2 * hidden_size * r + r + hidden_size)


def fuse_adapters(adapter_dirs: list[Path], weights: list[float], out_dir: Path) -> Path:
    """Save one adapter computing h + sum_i w_i * up_i(act(down_i(h))) at every target (fixed-weight AdapterFusion).

    Exact because act is elementwise: concatenating the down projections gives all the act(down_i h) side by side,
    and the up projection [w_1 U_1 | w_2 U_2 | ...] with bias sum_i w_i b_i sums them. The fused width is sum(r_i),
    stored as `bottleneck_size`."""
    if not adapter_dirs or len(adapter_dirs) != len(weights):
        raise ValueError(f"need one weight per adapter, got {len(adapter_dirs)} adapters and {len(weights)} weights")
    configs = []
    for d in adapter_dirs:
        config = json.loads((Path(d) / "adapter_config.json").read_text())
        if config.get("peft_type") != PEFT_TYPE:
            raise ValueError(f"{d} is not a bottleneck adapter (peft_type {config.get('peft_type')})")
        configs.append(BottleneckPeftConfig.from_pretrained(str(d)))

    def agreed(c: BottleneckPeftConfig) -> dict:  # what must match for the concatenation to be one adapter
        targets = c.target_modules if isinstance(c.target_modules, str) else sorted(c.target_modules)
        return {"variant": c.variant, "non_linearity": c.non_linearity, "target_modules": targets}

    first = agreed(configs[0])
    for d, c in zip(adapter_dirs[1:], configs[1:]):
        for name, value in agreed(c).items():
            if value != first[name]:
                raise ValueError(f"cannot fuse: {d} has {name} {value!r}, {adapter_dirs[0]} has {first[name]!r}")
    states = [load_file(str(Path(d) / "adapter_model.safetensors")) for d in adapter_dirs]
    if any(s.keys() != states[0].keys() for s in states):
        raise ValueError("cannot fuse: the adapters sit on different modules")

    fused = {}
    for key, saved in states[0].items():
        parts = [s[key].float() for s in states]
        if ".bottleneck_down." in key:  # weight [r_i, h], bias [r_i]: stack along the bottleneck
            value = torch.cat(parts, dim=0)
        elif key.endswith(".bottleneck_up.weight"):  # [h, r_i]
            value = torch.cat([w * p for w, p in zip(weights, parts)], dim=1)
        elif key.endswith(".bottleneck_up.bias"):
            value = sum(w * p for w, p in zip(weights, parts))
        else:
            raise ValueError(f"cannot fuse tensor {key}: only bottleneck weights are fusable")
        fused[key] = value.to(saved.dtype).contiguous()
    widths = {v.shape[0] for k, v in fused.items() if k.endswith(".bottleneck_down.weight")}
    if len(widths) != 1:
        raise ValueError(f"cannot fuse: target modules have different bottleneck widths {sorted(widths)}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataclasses.replace(configs[0], bottleneck_size=widths.pop()).save_pretrained(str(out_dir))
    save_file(fused, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    return out_dir
