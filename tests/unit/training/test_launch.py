"""`train.distributed`: the recipe under `accelerate launch`, two gloo processes on the CPU against one process with
the same global batch; a failing rank's error; no process left behind."""
import json
import os
from pathlib import Path

import pytest

from tasks.model import ModelRef
from tasks.training.config import TrainConfig
from tasks.training.launch import DistributedTrainingFailed, accelerate_config, launch_command, train_recipe
from tests.unit.training.support import fast


def _losses(result) -> list[float]:
    return [h["loss"] for h in json.loads(Path(result.history_path).read_text()) if "loss" in h]


def _processes_running(marker: str) -> list[str]:
    """Command lines of live processes that mention `marker` (the job's folder)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


def test_two_gloo_processes_follow_the_one_process_loss_curve(tmp_path, tiny_model_dir, chat_path):
    """24 rows, 6 steps of a global batch of 4: one process x 4 rows vs two processes x 2 rows (the sampler hands
    rank r the r-th half of each global batch). Same rows per step, so the same losses up to float summation order,
    and the same trained adapter."""
    model = ModelRef.of(str(tiny_model_dir))
    common = dict(max_steps=6, learning_rate=5e-3, packing=False)
    one = train_recipe(fast("lora", batch_size=4, **common), model, tiny_model_dir, chat_path, tmp_path / "one")
    two = train_recipe(fast("lora", batch_size=2, distributed="ddp", num_processes=2, **common), model,
                       tiny_model_dir, chat_path, tmp_path / "two")
    curve_one, curve_two = _losses(one), _losses(two)
    print("one process:", curve_one, "\ntwo processes:", curve_two)
    assert len(curve_one) == len(curve_two) == 6
    assert curve_two == pytest.approx(curve_one, rel=1e-4)
    assert curve_one[-1] < curve_one[0]  # it trained
    assert two.adapter_dir == tmp_path / "two" / "adapter" and (two.adapter_dir / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("checkpoint-*")) == ["checkpoint-6"]
    assert (tmp_path / "two" / "checkpoints" / "checkpoint-6" / "rng_state_1.pth").is_file()  # one per rank
    assert not _processes_running(str(tmp_path / "two"))


def test_a_failing_rank_fails_the_stage_with_its_own_error(tmp_path, tiny_model_dir):
    broken = tmp_path / "train.jsonl"
    broken.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json at all\n')
    cfg = fast("lora", batch_size=2, distributed="ddp", num_processes=2)
    with pytest.raises(DistributedTrainingFailed) as err:
        train_recipe(cfg, ModelRef.of(str(tiny_model_dir)), tiny_model_dir, broken, tmp_path / "out")
    message = str(err.value)
    assert "train.distributed=ddp: rank " in message and "Traceback" in message
    assert "JSON" in message or "json" in message  # the rank's own exception, not the launcher's summary
    assert not _processes_running(str(tmp_path / "out"))


def test_cuda_only_configs_are_refused_on_cpu_and_names_are_checked(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: FSDP is allowed")
    with pytest.raises(ValueError, match="FSDP needs CUDA"):
        launch_command(fast("lora", distributed="fsdp"), tmp_path / "job.json", 12345)
    with pytest.raises(ValueError, match="no accelerate config.*ddp, deepspeed_zero2, deepspeed_zero3, fsdp"):
        accelerate_config("ddpp")
    cmd = launch_command(fast("lora", distributed="ddp", num_processes=3), tmp_path / "job.json", 12345)
    assert cmd[cmd.index("--num_processes") + 1] == "3" and cmd[-2:] == ["tasks.training.launch",
                                                                           str(tmp_path / "job.json")]


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_shipped_accelerate_configs_are_what_accelerate_reads(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(accelerate_config(name)))
    assert config.num_processes == 2 and config.mixed_precision == "no"  # precision is train.precision's
    assert str(config.distributed_type).split(".")[-1] == {"ddp": "MULTI_GPU", "fsdp": "FSDP"}.get(name, "DEEPSPEED")
    if name == "fsdp":
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


def test_config_keys_are_validated():
    with pytest.raises(ValueError, match="recipe ppo has its own loop"):
        TrainConfig.model_validate({"recipe": "ppo", "distributed": "ddp", "rl": {"reward_function": "a:b"}})
    with pytest.raises(ValueError, match="num_processes is read only with train.distributed"):
        TrainConfig.model_validate({"num_processes": 2})
