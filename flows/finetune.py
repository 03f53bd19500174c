"""The `finetune` flow: prepare data -> extend tokenizer -> train -> evaluate -> package.

    python -m flows.finetune conf/smollm2/lora.yaml train.max_steps=30     # or: make pipeline

One MLflow run per flow run (resumed when the same config failed before); the flow only orders the
stages. The base model's scores are computed once and reused by later runs (`score_base`).
"""
from __future__ import annotations

import sys

from prefect import flow

from flows.cli import parse_config
from flows.run import conclude, tracked_run
from tasks.config import PipelineConfig
from tasks.evaluate import evaluate, score_base
from tasks.extend_tokenizer import extend_tokenizer
from tasks.model import resolve
from tasks.package import package
from tasks.prepare_data import prepare_data
from tasks.stage import run_stage
from tasks.train import train


@flow(name="finetune")
def finetune(config: PipelineConfig) -> dict:
    m = config.model
    with tracked_run(config) as (run, run_dir):
        base = resolve(m.name_or_path)
        data = run_stage(prepare_data, config.data, run_dir / "data", run, tokenizer_path=base)
        vocab = run_stage(extend_tokenizer, config.tokenizer, base, data.train_path, run_dir / "tokenizer", run,
                          m.trust_remote_code)
        trained = run_stage(train.with_options(timeout_seconds=config.train.timeout_minutes * 60), config.train,
                            base, vocab.tokenizer_dir, data.train_path, run_dir / "train", run, config.seed, m.dtype,
                            m.trust_remote_code)
        base_eval = run_stage(score_base, config.eval, base, data.validation_path, data.digest,
                              run_dir / "eval" / "base", run, m.dtype, m.trust_remote_code)
        evaluation = run_stage(evaluate, config.eval, base_eval, base, vocab.tokenizer_dir, trained.adapter_dir,
                               trained.model_dir, data.validation_path, run_dir / "eval", run, m.dtype,
                               m.trust_remote_code)
        packaged = run_stage(package, config.package, m, config.train.method, trained.adapter_dir,
                             trained.model_dir, trained.history_path, vocab.tokenizer_dir, vocab.added, data, evaluation,
                             config.model_dump(mode="json"), run_dir / "package", run)
        return conclude(run, run_dir, evaluation, packaged, final_loss=trained.final_loss)


if __name__ == "__main__":
    sys.exit(parse_config(finetune, "Run the finetune flow."))
