"""Serve the `finetune` flow as a Prefect deployment on the cron schedule in the config.

    python -m flows.serve conf/smollm2/lora.yaml        # or: make serve

The process polls for scheduled runs until stopped (Ctrl-C); runs appear in the Prefect UI (`make ui`).
"""
from __future__ import annotations

import argparse
import sys

from prefect import serve
from prefect.schedules import Cron

from flows.finetune import finetune
from tasks.config import ConfigError, PipelineConfig, load_config


def deployment(config: PipelineConfig):
    return finetune.to_deployment(
        name=f"{config.run_name}-scheduled",
        schedules=[Cron(config.schedule.cron, timezone=config.schedule.timezone)],
        parameters={"config": config.model_dump(mode="json")},
        description=f"Scheduled fine-tuning: {config.run_name}",
        tags=["tuneforge", config.train.method],
        concurrency_limit=1,  # one training run at a time: a slow run must not overlap the next one
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the finetune flow on its schedule.")
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    serve(deployment(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
