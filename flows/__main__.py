"""`python -m flows CONFIG.yaml [key=value ...]` is `tuneforge run CONFIG.yaml [key=value ...]` (flows/cli.py): the
flow the config describes. A config with `stages:` runs the chain flow, one with a `merge:` or `best_of_n:` section
that flow, any other `finetune`.
"""
import sys

from flows import cli


def main(argv: list[str] | None = None) -> int:
    return cli.main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
