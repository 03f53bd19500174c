"""Serve the config's flow (`finetune`, or `chain` for a config with stages) as a Prefect deployment on its cron.

    python -m flows.serve conf/smollm2/lora.yaml        # or: make serve

The process polls for scheduled runs until stopped (Ctrl-C); runs appear in the Prefect UI (`make ui`).
"""
from __future__ import annotations

import sys

from prefect import serve
from prefect.schedules import Cron

from flows.chain import chain
from flows.cli import load_from_argv
from flows.finetune import finetune
from tasks.config import ChainConfig, PipelineConfig


def deployment(config: PipelineConfig | ChainConfig):
    flow = chain if isinstance(config, ChainConfig) else finetune
    return flow.to_deployment(
        name=f"{config.run_name}-scheduled",
        schedules=[Cron(config.schedule.cron, timezone=config.schedule.timezone)],
        parameters={"config": config.model_dump(mode="json")},
        description=f"Scheduled fine-tuning: {config.run_name}",
        tags=["tuneforge", flow.name],
        concurrency_limit=1,  # one training run at a time: a slow run must not overlap the next one
    )


def main(argv: list[str] | None = None) -> int:
    serve(deployment(load_from_argv("Serve the config's flow on its schedule.", argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
