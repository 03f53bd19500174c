"""Knowledge distillation: a student learns the teacher's next-token distributions on the assistant turns.

    loss = alpha * CE(student, hard labels) + (1 - alpha) * T^2 * D(teacher_T, student_T)

D at temperature T is the forward KL(teacher || student) (`kl_div`/`forward_kl`, Hinton et al. 2015), the reverse
KL(student || teacher) (`reverse_kl`, mode seeking) or GKD's generalised JSD with `beta` (`jsd`; the same
convention as TRL: beta 0 = forward, 1 = reverse). T^2 keeps the soft term's gradients on the scale of the hard one.

Two modes:
- offline (ours, below): the teacher scores the training replies, the student matches it token by token. TRL's
  DistillationTrainer only samples on-policy and has no hard-label term, so the offline objective is a
  `compute_loss` on TRL's SFTTrainer (same data collation, packing, precision and checkpoints as SFT);
- on_policy: replies sampled from the student and scored by the teacher, through TRL's DistillationTrainer.

The student is the teacher with every other transformer block dropped (weights copied, same tokenizer), or any model
with the teacher's vocabulary. It trains whole (method full or partial): it is a new model, shipped as one.
With `compare_sft`, the same student is also trained by plain SFT on the same data and steps, so that evaluation
can show what the teacher added.
"""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from transformers import AutoConfig
from trl import SFTTrainer

from tasks.model import ModelRef, load_tokenizer
from tasks.training.common import TrainResult, load_for_training, make_trainer, run_trainer, training_args
from tasks.training.config import DistillationConfig, TrainConfig
from tasks.training.sft import load_messages, sft_args, train_sft
from tasks.vocab import apply_extension

log = logging.getLogger(__name__)


def divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, cfg: DistillationConfig) -> torch.Tensor:
    """Per-position D(teacher || student) of the temperature-softened distributions (last dim = vocabulary)."""
    s = F.log_softmax(student_logits.float() / cfg.temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / cfg.temperature, dim=-1)
    if cfg.loss_type in ("kl_div", "forward_kl"):
        return (t.exp() * (t - s)).sum(-1)
    if cfg.loss_type == "reverse_kl":
        return (s.exp() * (s - t)).sum(-1)
    beta = torch.tensor(cfg.beta, dtype=s.dtype, device=s.device)  # jsd: mixture m = beta * p_t + (1 - beta) * p_s
    m = torch.logsumexp(torch.stack([t + torch.log(beta), s + torch.log1p(-beta)]), dim=0)
    return beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      cfg: DistillationConfig, num_items: int | torch.Tensor | None = None):
    """(loss, {"hard": CE, "soft": T^2 * D}) over the positions that carry a label (labels unshifted, -100 ignored);
    `num_items` (the trainer's label count across gradient accumulation) replaces the batch's own count."""
    logits, teacher, target = student_logits[:, :-1], teacher_logits[:, :-1], labels[:, 1:]
    mask = target != -100
    count = torch.as_tensor(num_items if num_items is not None else mask.sum(), device=logits.device).clamp(min=1)
    hard = F.cross_entropy(logits[mask].float(), target[mask], reduction="sum") / count
    soft = cfg.temperature ** 2 * divergence(logits[mask], teacher[mask], cfg).sum() / count
    return cfg.alpha * hard + (1 - cfg.alpha) * soft, {"hard": hard.detach(), "soft": soft.detach()}


def student_from_teacher(teacher):
    """`teacher` (a freshly loaded copy, trimmed in place) with every other transformer block (0, 2, 4, ...) kept:
    DistilBERT's initialisation, which starts the student far closer to the teacher than random weights do."""
    layers = teacher.model.layers
    keep = list(range(0, len(layers), 2))
    teacher.model.layers = torch.nn.ModuleList(layers[i] for i in keep)
    for new_idx, layer in enumerate(teacher.model.layers):
        layer.self_attn.layer_idx = new_idx  # the KV cache is indexed by it
    text = teacher.config.get_text_config()
    text.num_hidden_layers = len(keep)
    if getattr(text, "layer_types", None):
        text.layer_types = [text.layer_types[i] for i in keep]
    return teacher


def check_vocabulary(student: ModelRef, teacher: ModelRef) -> None:
    """Distillation compares distributions over one vocabulary: the same size and the same token strings."""
    sizes = [AutoConfig.from_pretrained(m.path, trust_remote_code=m.trust_remote_code).get_text_config().vocab_size
             for m in (student, teacher)]
    vocabs = [load_tokenizer(m.path, m.trust_remote_code).get_vocab() for m in (student, teacher)]
    if sizes[0] != sizes[1] or vocabs[0] != vocabs[1]:
        differ = len(set(vocabs[0].items()) ^ set(vocabs[1].items()))
        raise ValueError(f"train.distill.student={student.name_or_path}: its vocabulary differs from the teacher "
                         f"{teacher.name_or_path}'s (embedding rows {sizes[0]} vs {sizes[1]}, {differ} token entries "
                         "differ); distillation needs the same tokenizer. Use student: every_other_layer, or a "
                         "student of the same model family")


def resolve_teacher(cfg: DistillationConfig, model: ModelRef, out_dir: Path) -> ModelRef:
    """The configured model, or `distill.teacher` (a package folder or MLflow URI) made loadable, as init_from is."""
    if cfg.teacher is None:
        return model
    from tasks.init_from import resolve_model

    spec = SimpleNamespace(init_from=cfg.teacher, name_or_path=None, dtype=model.dtype,
                           trust_remote_code=model.trust_remote_code)
    return resolve_model(spec, out_dir / "teacher")


def resolve_student(cfg: DistillationConfig, teacher: ModelRef, out_dir: Path) -> ModelRef:
    """`every_other_layer`: built from the teacher and saved once under out_dir; else the configured reference."""
    if cfg.student != "every_other_layer":
        student = ModelRef.of(cfg.student, teacher.dtype, teacher.trust_remote_code)
        check_vocabulary(student, teacher)
        return student
    folder = out_dir / "student_init"
    if not (folder / "config.json").is_file():
        tmp = folder.with_name("student_init.partial")
        student_from_teacher(teacher.load_model()).save_pretrained(tmp, safe_serialization=True)
        teacher.load_tokenizer().save_pretrained(tmp)
        tmp.rename(folder)
    return ModelRef(name_or_path=teacher.name_or_path + " (every other layer)", path=str(folder.resolve()),
                    dtype=teacher.dtype, trust_remote_code=teacher.trust_remote_code)


class OfflineDistillationTrainer(SFTTrainer):
    """SFTTrainer whose loss is `distillation_loss` against a frozen teacher on the same batch."""

    def __init__(self, *args, teacher, distill: DistillationConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.distill = teacher.to(self.args.device).eval().requires_grad_(False), distill
        self._parts: dict[str, list[float]] = {"hard": [], "soft": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"} | {"use_cache": False}
        outputs = model(**model_inputs)
        with torch.no_grad():
            teacher_logits = self.teacher(**model_inputs).logits
        loss, parts = distillation_loss(outputs.logits, teacher_logits, inputs["labels"], self.distill,
                                        num_items_in_batch)
        for k, v in parts.items():
            self._parts[k].append(v.item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        """Add the mean hard and soft terms since the last log line (MLflow shows both curves)."""
        for k, values in self._parts.items():
            if values and "loss" in logs:
                logs[f"distill_{k}"] = sum(values) / len(values)
                values.clear()
        super().log(logs, *args, **kwargs)


def _on_policy_trainer(cfg: TrainConfig, student, tokenizer, teacher, train_path: Path, out_dir: Path, seed: int,
                       logger):
    """TRL's DistillationTrainer: replies sampled from the student, the divergence computed against the teacher."""
    from trl import DistillationConfig as TRLDistillationConfig, DistillationTrainer

    d = cfg.distill
    beta = {"kl_div": 0.0, "forward_kl": 0.0, "reverse_kl": 1.0}.get(d.loss_type, d.beta)
    args = training_args(cfg, out_dir, seed, TRLDistillationConfig, beta=beta, temperature=d.temperature,
                         max_completion_length=d.max_new_tokens, disable_dropout=True, top_k=0, top_p=1.0)
    prompts = load_messages(train_path).map(
        lambda row: {"prompt": row["messages"][:-1] if row["messages"][-1]["role"] == "assistant" else row["messages"]},
        remove_columns=["messages"])
    return make_trainer(DistillationTrainer, cfg, student, tokenizer, args, prompts, logger, teacher_model=teacher)


def train_distill(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                  logger=None, seed: int = 0) -> TrainResult:
    """Distil the teacher (the configured model, or `distill.teacher`) into the student on `train_path`'s chats."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher_ref = resolve_teacher(cfg.distill, model, out_dir)
    student_ref = resolve_student(cfg.distill, teacher_ref, out_dir)
    student, tokenizer = load_for_training(cfg, student_ref, tokenizer_dir, seed, marked_template=True)
    teacher = teacher_ref.load_model()
    apply_extension(teacher, tokenizer, Path(tokenizer_dir))
    if cfg.distill.mode == "offline":
        trainer = make_trainer(OfflineDistillationTrainer, cfg, student, tokenizer, sft_args(cfg, out_dir, seed),
                               load_messages(train_path), logger, teacher=teacher, distill=cfg.distill)
    else:
        trainer = _on_policy_trainer(cfg, student, tokenizer, teacher, train_path, out_dir, seed, logger)
    result = run_trainer(trainer, cfg, out_dir, logger)
    del trainer, teacher, student
    result.teacher_dir = Path(teacher_ref.path)
    if cfg.distill.compare_sft:  # the same student, same data and steps, hard labels only
        log.info("distill: training the SFT baseline student for the comparison")
        baseline = train_sft(cfg.model_copy(update={"recipe": "sft"}), student_ref, tokenizer_dir, train_path,
                             out_dir / "sft_baseline", seed=seed)
        result.baseline_model_dir = baseline.model_dir
        if logger:
            logger.log_metrics({"distill/sft_baseline_final_loss": baseline.final_loss})
    return result
