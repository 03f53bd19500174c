"""`python -m flows CONFIG.yaml [key=value ...]` (what `make pipeline` runs): the flow the config describes.

A config with `stages:` runs the chain flow, one with a `merge:` or `best_of_n:` section that flow, any other
`finetune`.
"""
import sys

from flows.cli import load_from_argv
from tasks.config import ChainConfig


def main(argv: list[str] | None = None) -> int:
    config = load_from_argv("Run the pipeline a config describes (finetune, chain or merge).", argv)
    if isinstance(config, ChainConfig):
        from flows.chain import chain as run
    elif config.merge is not None:
        from flows.merge import merge as run
    elif config.best_of_n is not None:
        from flows.best_of_n import best_of_n as run
    else:
        from flows.finetune import finetune as run
    print(run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
