"""The recipe's mechanics: packed == padded loss, exact resume after a kill, precision choice, validation loss."""
import json

import pytest
import torch
from transformers import TrainerCallback

from tasks.model import ModelRef
from tasks.training import common
from tasks.training.common import precision_flags
from tasks.training.sft import build_trainer, train_sft
from tests.unit.training.support import fast


def _data_loss(trainer) -> tuple[float, int]:
    """Token-weighted mean loss of the fixed model over the whole training set, and the number of label tokens."""
    trainer.model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for batch in trainer.get_train_dataloader():
            n = int((batch["labels"][:, 1:] != -100).sum())
            nll += trainer.compute_loss(trainer.model, dict(batch)).item() * n
            count += n
    return nll / count, count


def test_packed_and_padded_give_the_same_loss(tmp_path, tiny_model_dir, chat_path):
    losses = {}
    for packing in (False, True):
        trainer = build_trainer(fast("full", packing=packing, max_length=256, batch_size=3), ModelRef.of(str(tiny_model_dir)),
                                tiny_model_dir, chat_path, tmp_path / str(packing))
        with torch.no_grad():  # a sharper random model, so attending across examples would change the loss
            for p in trainer.model.parameters():
                p.mul_(4)
        losses[packing] = _data_loss(trainer)
        batch = next(iter(trainer.get_train_dataloader()))
        if packing:  # one row of several examples, positions restarting at 0 for each
            assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
            assert int((batch["position_ids"][0] == 0).sum()) > 1
            leaky = {k: v for k, v in batch.items() if k in ("input_ids", "labels")}
            leaky_loss = trainer.model(**leaky).loss.item()  # no position ids: one causal mask over the whole row
            packed_loss = trainer.model(**dict(batch)).loss.item()
            assert abs(leaky_loss - packed_loss) > 1e-2
        else:
            assert batch["input_ids"].shape[0] == 3 and "attention_mask" in batch
    (padded, n_padded), (packed, n_packed) = losses[False], losses[True]
    assert n_padded == n_packed > 400  # every example kept whole
    assert packed == pytest.approx(padded, abs=1e-4)


class KillAt(TrainerCallback):
    """Simulates a crash: raises at the end of optimizer step `step` (before that step is logged or saved)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed at step {self.step}")


def _curve(result) -> list[tuple[int, float]]:
    return [(h["step"], h["loss"]) for h in json.loads(result.history_path.read_text()) if "loss" in h]


@pytest.mark.parametrize("save_steps,kill_at,resumes_from", [
    (2, 5, "checkpoint-4"),  # mid-epoch: 6 steps per epoch (24 rows / batch 4)
    (3, 7, "checkpoint-6"),  # exactly at the epoch boundary
])
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, chat_path, save_steps, kill_at,
                                                        resumes_from):
    cfg = fast("lora", max_steps=8, save_steps=save_steps, lora={"dropout": 0.1})  # dropout: RNG state matters
    args = (ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path)
    straight = train_sft(cfg, *args, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        train_sft(cfg, *args, tmp_path / "killed", callbacks=[KillAt(kill_at)])
    resumed = train_sft(cfg, *args, tmp_path / "killed")
    assert resumed.resumed_from.endswith(resumes_from)
    expected, got = _curve(straight), _curve(resumed)
    assert [s for s, _ in got] == list(range(1, 9))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-5)
    assert resumed.train_tokens == straight.train_tokens


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_takes_bf16_only_where_the_cpu_has_it(native, monkeypatch):
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: native)
    assert precision_flags("auto") == {"bf16": native, "fp16": False}
    assert precision_flags("fp32") == {"bf16": False, "fp16": False}
    with pytest.raises(ValueError, match="CUDA"):
        precision_flags("fp16")
    if native:
        assert precision_flags("bf16") == {"bf16": True, "fp16": False}
    else:
        with pytest.raises(ValueError, match="no native bf16"):
            precision_flags("bf16")


def test_every_trl_default_that_slows_a_cpu_is_set_explicitly(tmp_path):
    """TRL 1.x defaults bf16=True and gradient_checkpointing=True; the one mapping overrides both from the config."""
    from trl import DPOConfig, SFTConfig

    cfg = fast("lora", precision="fp32")
    for cls in (SFTConfig, DPOConfig):
        args = common.training_args(cfg, tmp_path, 0, cls)
        assert args.bf16 is False and args.gradient_checkpointing is False
        assert args.warmup_steps == cfg.warmup_fraction and args.report_to == []


def test_eval_path_reports_validation_loss(tmp_path, tiny_model_dir, chat_path):
    result = train_sft(fast("ia3", max_steps=2, logging_steps=1), ModelRef.of(str(tiny_model_dir)), tiny_model_dir, chat_path,
                       tmp_path, eval_path=chat_path)
    assert 9 < result.eval_loss < 11.5  # ~ln(49152) = 10.8 for a near-random model
    assert result.train_tokens > 0 and result.peak_memory_mb > 0


def test_a_checkpoint_cut_off_mid_save_is_dropped_and_the_one_before_resumed(tmp_path):
    from tasks.training.common import last_complete_checkpoint

    for step, complete in ((10, True), (20, True), (30, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "adapter_model.safetensors").write_bytes(b"")
        if complete:
            (ckpt / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")
    assert not (tmp_path / "checkpoint-30").exists()
    assert last_complete_checkpoint(tmp_path / "none") is None
