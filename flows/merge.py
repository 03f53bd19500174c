"""The `merge` flow: combine trained adapters (linear, TIES, DARE, SVD, soup), then evaluate and package
the result exactly like a trained one.

    python -m flows.merge conf/smollm2/merge_ties.yaml 'merge.sources=[runs/runs/<id>/package/adapter, ...]'
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
from tasks.model import resolve
from tasks.package import package
from tasks.packaging.merge import MergeConfig, run_merge
from tasks.prepare_data import prepare_data
from tasks.stage import STAGE_CACHE, RunRef, run_stage


@task(name="merge_adapters", cache_policy=STAGE_CACHE, persist_result=True)
def merge_adapters(cfg: MergeConfig, base_model: str, out_dir: Path, run: RunRef) -> Path:
    """Combine the source adapters into one (folding into the base is the package stage's job)."""
    merged = Path(run_merge(cfg.model_copy(update={"fold_into_base": False}), base_model, out_dir))
    run.logger().log_params({"merge.sources_count": len(cfg.sources)})
    return merged


@flow(name="merge")
def merge(config: PipelineConfig) -> dict:
    if config.merge is None:
        raise ValueError("the merge flow needs a `merge:` section (method, sources, weights, density)")
    m = config.model
    with tracked_run(config) as (run, run_dir):
        base = resolve(m.name_or_path)
        data = run_stage(prepare_data, config.data, run_dir / "data", run, tokenizer_path=base)
        vocab = run_stage(extend_tokenizer, config.tokenizer, base, data.train_path, run_dir / "tokenizer", run,
                          m.trust_remote_code)
        merged = run_stage(merge_adapters, config.merge, base, run_dir / "merge", run)
        # a soup of full-weight checkpoints is a model, everything else an adapter
        adapter, model = (merged, None) if (merged / "adapter_config.json").is_file() else (None, merged)
        base_eval = run_stage(score_base, config.eval, base, data.validation_path, data.digest,
                              run_dir / "eval" / "base", run, m.dtype, m.trust_remote_code)
        evaluation = run_stage(evaluate, config.eval, base_eval, base, vocab.tokenizer_dir, adapter, model,
                               data.validation_path, run_dir / "eval", run, m.dtype, m.trust_remote_code)
        packaged = run_stage(package, config.package, m, f"merge-{config.merge.method}", adapter, model, None,
                             vocab.tokenizer_dir, vocab.added, data, evaluation, config.model_dump(mode="json"),
                             run_dir / "package", run)
        return conclude(run, run_dir, evaluation, packaged)


if __name__ == "__main__":
    sys.exit(parse_config(merge, "Run the merge flow."))
