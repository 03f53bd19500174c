"""The `merge` flow: combine trained adapters (linear, TIES, DARE, SVD, soup), then evaluate and package
the result exactly like a trained one.

    python -m flows conf/smollm2/merge_ties.yaml 'merge.sources=[runs/runs/<id>/package/adapter, ...]'
"""
from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, task

from flows.cli import parse_config
from flows.run import conclude, tracked_run
from tasks.config import PipelineConfig
from tasks.evaluate import evaluate, score_base
from tasks.extend_tokenizer import extend_tokenizer
from tasks.model import ModelRef
from tasks.package import package
from tasks.packaging.merge import MergeConfig, run_merge
from tasks.prepare_data import prepare_data
from tasks.resolve_model import resolve_model
from tasks.stage import RunRef, STAGE_CACHE, STAGE_RESULTS, run_stage
from tasks.training.common import Trained


@task(name="merge_adapters", cache_policy=STAGE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS)
def merge_adapters(cfg: MergeConfig, model: ModelRef, out_dir: Path, run: RunRef) -> Trained:
    """Combine the source adapters into one (folding into the base is the package stage's job)."""
    merged = Path(run_merge(cfg.model_copy(update={"fold_into_base": False}), model, out_dir))
    run.logger().log_params({"merge.sources_count": len(cfg.sources)})
    # a soup of full-weight checkpoints is a model, everything else an adapter
    adapter = (merged / "adapter_config.json").is_file()
    return Trained(method=f"merge-{cfg.method}", adapter_dir=merged if adapter else None,
                   model_dir=None if adapter else merged)


@flow(name="merge", result_serializer=STAGE_RESULTS)  # JSON, as the stages' results
def merge(config: PipelineConfig) -> dict:
    if config.merge is None:
        raise ValueError("the merge flow needs a `merge:` section (method, sources, weights, density)")
    with tracked_run(config) as (run, run_dir):
        model = run_stage(resolve_model, config.model, run_dir / "model", run)
        data = run_stage(prepare_data, config.data, config.train.recipe, model, run_dir / "data", run)
        vocab = run_stage(extend_tokenizer, config.tokenizer, model, data, run_dir / "tokenizer", run)
        merged = run_stage(merge_adapters, config.merge, model, run_dir / "merge", run)
        base_eval = run_stage(score_base, config.eval, model, data, run_dir / "eval" / "base", run)
        evaluation = run_stage(evaluate, config.eval, base_eval, model, vocab, merged, data, run_dir / "eval", run)
        packaged = run_stage(package, config, model, merged, vocab, data, evaluation, run_dir / "package", run)
        return conclude(run, run_dir, evaluation, packaged)


if __name__ == "__main__":
    sys.exit(parse_config(merge, "Run the merge flow."))
