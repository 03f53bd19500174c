"""The `best_of_n` flow: sample N replies per validation prompt from a policy, keep the reward model's favourite,
and report best-of-N against greedy decoding for each N (table, plot and win-rates in MLflow).

    python -m flows conf/smollm2/best_of_n.yaml 'best_of_n.reward_model=models:/smollm2-reward-hh@champion'

`best.jsonl` (each prompt with its best sample, as chat rows) is what RAFT trains on: SFT with it as the data source.
"""
from __future__ import annotations

import sys

from prefect import flow

from flows.cli import parse_config
from flows.run import tracked_run
from tasks.config import PipelineConfig
from tasks.prepare_data import prepare_data
from tasks.resolve_model import resolve_model
from tasks.sample_best_of_n import best_of_n as sample
from tasks.stage import STAGE_RESULTS, run_stage


@flow(name="best_of_n", result_serializer=STAGE_RESULTS)  # JSON, as the stages' results
def best_of_n(config: PipelineConfig) -> dict:
    cfg = config.best_of_n
    if cfg is None:
        raise ValueError("the best_of_n flow needs a `best_of_n:` section (reward_model, n, prompts)")
    policy = config.model.model_copy(update={"init_from": cfg.policy}) if cfg.policy else config.model
    with tracked_run(config) as (run, run_dir):
        model = run_stage(resolve_model, policy, run_dir / "model", run)
        data = run_stage(prepare_data, config.data, None, model, run_dir / "data", run)
        result = run_stage(sample, cfg, model, data, run_dir / "best_of_n", run)
        run.logger().finish(True)
        return {"mlflow_run_id": run.run_id, "run_dir": str(run_dir), "table": result.table,
                "best": str(result.best_path)}


if __name__ == "__main__":
    sys.exit(parse_config(best_of_n, "Run best-of-N sampling."))
