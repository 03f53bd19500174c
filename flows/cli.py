"""Command line shared by the flows: `python -m flows.<name> CONFIG.yaml [key=value ...]`."""
from __future__ import annotations

import argparse
import sys

from tasks.config import ConfigError, load_config


def load_from_argv(description: str, argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="YAML file under conf/")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=10")
    args = parser.parse_args(argv)
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as err:
        print(err, file=sys.stderr)
        sys.exit(2)


def parse_config(flow_fn, description: str, argv: list[str] | None = None) -> int:
    """Load the config from the command line and run `flow_fn` on it."""
    print(flow_fn(load_from_argv(description, argv)))
    return 0
