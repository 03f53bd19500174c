"""The `finetune` flow: resolve the model -> prepare data -> extend tokenizer -> train the recipe -> evaluate -> package.

    python -m flows conf/smollm2/lora.yaml train.max_steps=30     # or: make pipeline

One MLflow run per flow run (resumed when the same config failed before; nested under `parent` when a chain runs
it as a stage); the flow only orders the stages. The base model's scores are computed once and reused by later runs.
"""
from __future__ import annotations

import sys

from prefect import flow

from flows.cli import parse_config
from flows.run import conclude, tracked_run
from tasks.config import PipelineConfig
from tasks.evaluate import evaluate, score_base
from tasks.extend_tokenizer import extend_tokenizer
from tasks.package import package
from tasks.prepare_data import prepare_data
from tasks.resolve_model import resolve_model
from tasks.stage import RunRef, STAGE_RESULTS, run_stage
from tasks.train import train


@flow(name="finetune", result_serializer=STAGE_RESULTS)  # JSON, as the stages' results
def finetune(config: PipelineConfig, parent: RunRef | None = None) -> dict:
    with tracked_run(config, parent) as (run, run_dir):
        model = run_stage(resolve_model, config.model, run_dir / "model", run)
        data = run_stage(prepare_data, config.data, config.train.recipe, model, run_dir / "data", run)
        vocab = run_stage(extend_tokenizer, config.tokenizer, model, data, run_dir / "tokenizer", run)
        trained = run_stage(train.with_options(timeout_seconds=config.train.timeout_minutes * 60), config.train,
                            model, vocab, data, run_dir / "train", run, config.seed)
        base_eval = run_stage(score_base, config.eval, model, data, run_dir / "eval" / "base", run,
                              config.train.recipe)
        evaluation = run_stage(evaluate, config.eval, base_eval, model, vocab, trained, data, run_dir / "eval", run,
                               config.train)
        packaged = run_stage(package, config, model, trained, vocab, data, evaluation, run_dir / "package", run)
        return conclude(run, run_dir, evaluation, packaged, final_loss=trained.final_loss)


if __name__ == "__main__":
    sys.exit(parse_config(finetune, "Run the finetune flow."))
