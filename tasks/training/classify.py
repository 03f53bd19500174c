"""Transfer learning to a classification task: a new head on the backbone's pooled hidden state, cross-entropy on
the labels, through transformers' Trainer.

The head reads the last non-padding token's hidden state (a causal LM has read the whole text there; this is
`AutoModelForSequenceClassification`'s pooling). How much of the backbone moves is `train.transfer`:
- `freeze_encoder: true` (the default): only the head trains; the backbone is a fixed feature extractor;
- `freeze_encoder: false`: everything trains, with the design documents' layer-wise rates `encoder` (embeddings
  and the lower half of the blocks), `decoder` (the upper half and the final norm) and `head`;
- a LoRA-family method trains adapters plus the head instead (PEFT `modules_to_save`).
The result is one sequence-classification folder (adapter folded in, labels in its config), packaged and registered.
"""
from __future__ import annotations

from pathlib import Path

import torch
from datasets import load_dataset
from peft import get_peft_model
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

from evals.classification import load_labelled
from tasks.model import ModelRef, torch_dtype
from tasks.training.common import TrainResult, make_trainer, run_trainer, training_args
from tasks.training.config import FULL_WEIGHT, TrainConfig, TransferConfig
from tasks.training.methods import adapter_for, freeze_for_partial
from tasks.vocab import apply_extension


def read_labels(path: Path) -> list[str]:
    """The sorted label set of a prepared split (rows {"text", "label"})."""
    return sorted({r["label"] for r in load_labelled(path)})


def load_classifier(model: ModelRef, tokenizer, labels: list[str], transfer: TransferConfig):
    """The backbone with a classification head over `labels` (new, or kept when the checkpoint has these labels)."""
    kwargs = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                  label2id={label: i for i, label in enumerate(labels)})
    classifier = AutoModelForSequenceClassification.from_pretrained(
        model.path, dtype=torch_dtype(model.dtype), trust_remote_code=model.trust_remote_code, use_safetensors=True,
        **kwargs, **({"ignore_mismatched_sizes": True} if transfer.new_head else {}))
    classifier.config.pad_token_id = tokenizer.pad_token_id  # the head finds the last real token by the pad id
    return classifier


def transfer_lrs(classifier, transfer: TransferConfig) -> dict[str, float]:
    """`layer_wise_lr` (encoder/decoder/head) as per-parameter rules for the optimizer (`train.layer_lrs` syntax)."""
    n = classifier.config.get_text_config().num_hidden_layers
    lr = transfer.layer_wise_lr
    rules = {}
    if "head" in lr:
        rules["score"] = lr["head"]
    if "encoder" in lr:
        rules |= {"embeddings": lr["encoder"], f"layers.0-{n // 2 - 1}": lr["encoder"]}
    if "decoder" in lr:
        rules |= {f"layers.{n // 2}-{n - 1}": lr["decoder"], "norm": lr["decoder"]}
    return rules


def prepare_model(cfg: TrainConfig, classifier, new_token_ids: list[int]):
    """Freeze or wrap the classifier as `train.transfer` and `train.method` say."""
    if cfg.method not in FULL_WEIGHT:  # adapters + the head
        peft_config = adapter_for(cfg).peft_config()
        peft_config.task_type, peft_config.modules_to_save = "SEQ_CLS", ["score"]
        return get_peft_model(classifier, peft_config)
    if cfg.method == "partial":
        freeze_for_partial(classifier, cfg.partial, new_token_ids)
    else:
        classifier.requires_grad_(not cfg.transfer.freeze_encoder)
    classifier.score.requires_grad_(True)
    return classifier


def tokenized(path: Path, tokenizer, labels: list[str], max_length: int):
    label2id = {label: i for i, label in enumerate(labels)}
    ds = load_dataset("json", data_files=str(path), split="train")
    return ds.map(lambda rows: {**tokenizer(rows["text"], truncation=True, max_length=max_length),
                                "labels": [label2id[label] for label in rows["label"]]},
                  batched=True, remove_columns=ds.column_names)


def train_classify(cfg: TrainConfig, model: ModelRef, tokenizer_dir: Path, train_path: Path, out_dir: Path, *,
                   logger=None, seed: int = 0) -> TrainResult:
    out_dir = Path(out_dir)
    tokenizer = model.load_tokenizer(tokenizer_dir)
    labels = read_labels(train_path)
    if len(labels) < 2:
        raise ValueError(f"recipe classify needs at least 2 labels in the training data, found {labels}")
    torch.manual_seed(seed)
    classifier = load_classifier(model, tokenizer, labels, cfg.transfer)
    new_ids = apply_extension(classifier, tokenizer, Path(tokenizer_dir))
    classifier = prepare_model(cfg, classifier, new_ids)
    if not cfg.transfer.freeze_encoder and cfg.transfer.layer_wise_lr:
        cfg = cfg.model_copy(update={"layer_lrs": transfer_lrs(classifier, cfg.transfer)})
    args = training_args(cfg, out_dir, seed, TrainingArguments, remove_unused_columns=False)
    trainer = make_trainer(Trainer, cfg, classifier, tokenizer, args,
                           tokenized(train_path, tokenizer, labels, cfg.max_length), logger,
                           data_collator=DataCollatorWithPadding(tokenizer))
    result = run_trainer(trainer, cfg, out_dir, logger)
    if result.model_dir is not None:
        return result
    model_dir = out_dir / "model"  # one folder that loads with AutoModelForSequenceClassification
    trainer.model.merge_and_unload().save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    return result.model_copy(update={"model_dir": model_dir, "adapter_dir": None})
