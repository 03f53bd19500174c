"""The `chain` flow: stages run in order (SFT -> DPO, SFT -> reward model -> PPO), one command.

    python -m flows conf/smollm2/sft_then_sft.yaml           # or: make pipeline CONF=conf/smollm2/sft_then_sft.yaml

One parent Prefect flow with a `finetune` subflow per stage, and one parent MLflow run with a nested run per stage.
`model.init_from: stage:<name>` becomes that stage's package folder before the stage runs. A re-run after a
failure or a kill resumes the same parent and stage runs: finished stages come back from the task cache,
the interrupted one from its last checkpoint. The parent run carries the chain's verdict.
"""
from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from evals import forgetting

from flows.cli import parse_config
from flows.finetune import finetune
from flows.run import DriftGateFailed, tracked_run
from tasks.banner import announce
from tasks.config import STAGE_DATA_REFS, ChainConfig, PipelineConfig, stage_refs, with_value
from tasks.stage import STAGE_RESULTS


def with_stage_outputs(stage: PipelineConfig, done: dict[str, dict]) -> PipelineConfig:
    """Every `stage:<name>` -> that finished stage's package folder (init_from, reward models, a teacher), or its
    prepared train split (continual learning's previous task)."""
    for key, name in stage_refs(stage).items():
        output = str(Path(done[name]["run_dir"]) / "data" / "train.jsonl") if key in STAGE_DATA_REFS \
            else done[name]["package"]
        stage = with_value(stage, key, output)
    return stage


@flow(name="chain", result_serializer=STAGE_RESULTS)  # JSON, as the stages' results
def chain(config: ChainConfig) -> dict:
    with tracked_run(config) as (run, run_dir):
        logger, done = run.logger(), {}
        logger.set_tags({"chain.stages": " -> ".join(f"{n} ({s.train.recipe})" for n, s in config.stages.items())})
        for name, stage in config.stages.items():
            announce(f"── stage {name}: {stage.train.recipe} / {stage.train.method}")
            try:
                done[name] = finetune.with_options(flow_run_name=f"{config.run_name}/{name}")(
                    with_stage_outputs(stage, done), parent=run)
            except DriftGateFailed as err:
                logger.set_tags({"gate": "failed", "failed_stage": name})
                raise DriftGateFailed(f"stage {name}: {err}") from err
        strategies = {n: s.train.continual.strategy for n, s in config.stages.items() if s.train.continual.previous_data}
        if strategies:  # continual learning: one table and plot of what each strategy kept of the previous task
            rows = forgetting.forgetting_rows(done, strategies)
            for path in forgetting.write(rows, run_dir / "forgetting"):
                logger.log_artifacts(path, "forgetting")
            create_markdown_artifact(key="forgetting", markdown=forgetting.markdown(rows),
                                     description="Forgetting of the previous task per continual-learning strategy")
        logger.set_tags({"gate": "passed", "final_package": done[name]["package"]})
        logger.finish(True)
        create_table_artifact(key="chain-stages", description="Stages of the chain, in order", table=[
            {"stage": n, "recipe": config.stages[n].train.recipe, "mlflow_run_id": r["mlflow_run_id"],
             "package": r["package"], "registered_version": r["registered_version"]} for n, r in done.items()])
        return {"mlflow_run_id": run.run_id, "run_dir": str(run_dir), "stages": done,
                "package": done[name]["package"], "verdict": "passed"}


if __name__ == "__main__":
    sys.exit(parse_config(chain, "Run a chain of stages."))
