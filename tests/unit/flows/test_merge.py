"""The merge flow on the tiny model: two LoRA adapters TIES-merged, evaluated, gated and registered."""
import torch
from mlflow import MlflowClient
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

from flows.merge import merge
from tasks.model import load_model
from tests.unit.flows.test_finetune import tiny_config


def _adapter(base_dir, out, seed):
    torch.manual_seed(seed)
    model = get_peft_model(load_model(str(base_dir)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.05)
    model.save_pretrained(out)
    return out


def test_merge_flow_registers_a_ties_merge(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness):
    a = _adapter(tiny_model_dir, tmp_path / "a", 1)
    b = _adapter(tiny_model_dir, tmp_path / "b", 2)
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, conf="conf/smollm2/merge_ties.yaml",
                         extra=[f"merge.sources=[{a}, {b}]", "package.registered_model_name=tiny-merged"])
    result = merge(config)

    merged = load_file(str(tmp_path / "runs" / "runs" / result["mlflow_run_id"] / "merge" / "adapter" /
                           "adapter_model.safetensors"))
    ours = load_file(str(a / "adapter_model.safetensors"))
    assert merged.keys() and not all(torch.equal(merged[k], ours[k]) for k in merged if k in ours)
    run = MlflowClient(mlflow_uri).get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["merge.method"] == "ties"
    version = MlflowClient(mlflow_uri).get_model_version("tiny-merged", result["registered_version"])
    assert version.tags["method"] == "merge-ties"


def test_merge_flow_fuses_bottleneck_adapters(tmp_path, tiny_model_dir, mlflow_uri, prefect_harness):
    from peft import get_peft_model as wrap

    from tasks.training.bottleneck import peft_config
    from tasks.training.config import BottleneckConfig

    sources = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = wrap(load_model(str(tiny_model_dir)), peft_config(BottleneckConfig(reduction_factor=8)))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "bottleneck_" in name:
                    p.normal_(0, 0.05)
        model.save_pretrained(tmp_path / f"b{seed}")
        sources.append(tmp_path / f"b{seed}")
    config = tiny_config(tmp_path, tiny_model_dir, mlflow_uri, conf="conf/smollm2/merge_fusion.yaml",
                         extra=[f"merge.sources=[{sources[0]}, {sources[1]}]",
                                "package.registered_model_name=tiny-fused"])
    result = merge(config)
    fused = load_file(str(tmp_path / "runs" / "runs" / result["mlflow_run_id"] / "merge" / "adapter" /
                          "adapter_model.safetensors"))
    assert all(v.shape[0] == 16 for k, v in fused.items() if k.endswith("bottleneck_down.weight"))  # 8 + 8 wide
    version = MlflowClient(mlflow_uri).get_model_version("tiny-fused", result["registered_version"])
    assert version.tags["method"] == "merge-fusion"
