"""The `tuneforge` command (`pip install -e .` puts it in .venv/bin), in the style of `axolotl train x.yml`:

    tuneforge run conf/smollm2/lora.yaml train.max_steps=30   the flow the config describes, a summary at the end
    tuneforge config conf/smollm2/lora.yaml [key=value ...]   the resolved config, as YAML
    tuneforge keys [PREFIX]                                    every config key: type, default, description
    tuneforge ui                                               MLflow UI on :5000 and Prefect UI on :4200
    tuneforge compare RUN_ID RUN_ID ...                        MLflow runs side by side (table and plots)
    tuneforge services start|stop|status [key=value ...]       PostgreSQL, MLflow and Prefect servers (flows/services.py)
    tuneforge serve conf/smollm2/lora.yaml                     the config's flow as a deployment on its cron

The config is loaded and validated before a flow, and so torch, Prefect or MLflow, is imported: a typo is reported
in well under a second. Expected failures (config, data, drift gate) print their message and exit non-zero;
`--debug` keeps the traceback, `--verbose` the libraries' own output. `python -m flows CONF` is `tuneforge run CONF`.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from flows import errors, summary, terminal
from tasks.config import ChainConfig, ConfigError, PipelineConfig, load_config

# For `tuneforge run/serve/ui` in or outside make; explicit settings win. PREFECT_HOME follows run_root (as the MLflow
# store does, tasks.tracking.tracking_uri), so one setting decides where a run lands.
ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def main(argv: list[str] | None = None) -> int:
    """The `tuneforge` console script."""
    args = _parser().parse_args(argv)
    try:
        return guarded(lambda: args.command(args), debug=getattr(args, "debug", False))
    except BrokenPipeError:  # `tuneforge keys | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def guarded(command, debug: bool = False) -> int:
    """Run `command`; an expected error prints its message and returns its exit code (with `debug`, after its
    traceback). Unexpected errors propagate: Python prints their traceback."""
    try:
        return command() or 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except Exception as err:
        expected = errors.expected_error(err)
        if expected is None:
            raise
        if debug:
            traceback.print_exc()
        return errors.report(expected)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneforge", description="Fine-tune, evaluate and package LLMs from a "
                                     "YAML config (Prefect flows, MLflow tracking).")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def config_command(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("config", help="YAML file, e.g. conf/smollm2/lora.yaml")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, e.g. train.max_steps=10")
        p.add_argument("--debug", action="store_true", help="print the traceback of every error")
        p.set_defaults(command=func)
        return p

    run = config_command("run", "run the flow a config describes (finetune, chain, merge or best_of_n)", _run)
    run.add_argument("--verbose", action="store_true", help="show the libraries' progress bars and Prefect's logs")
    config_command("config", "print the resolved config (file, its base, overrides) as YAML", _config)
    config_command("serve", "serve the config's flow as a Prefect deployment on its cron schedule", _serve)
    keys = sub.add_parser("keys", help="list every config key with its type, default and description")
    keys.add_argument("prefix", nargs="?", default="", help="only keys starting with this, e.g. train.lora")
    keys.set_defaults(command=_keys)
    ui = sub.add_parser("ui", help="MLflow UI on 127.0.0.1:5000 and Prefect UI on 127.0.0.1:4200 (Ctrl-C stops both)")
    ui.add_argument("--run-root", type=Path, default=Path("runs"), help="the run_root whose runs to show")
    ui.set_defaults(command=_ui)
    compare = sub.add_parser("compare", help="MLflow runs side by side: differing params, final metrics, curves")
    compare.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    compare.add_argument("--out", default="runs/compare", help="folder for comparison.md and the plots")
    compare.set_defaults(command=_compare)
    services = sub.add_parser("services", help="PostgreSQL, an MLflow and a Prefect server on loopback, detached "
                              "(`make services`)")
    services.add_argument("action", choices=["start", "stop", "status"])
    services.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. mlflow.port=5002 root=/srv/tf")
    services.add_argument("--config", help="default: conf/services.yml")
    services.set_defaults(command=_services)
    return parser


def _set_env_defaults(run_root: Path) -> None:
    """Before Prefect is imported: its home (database, cached stage results) under run_root unless PREFECT_HOME is
    set explicitly, and the offline defaults."""
    os.environ.setdefault("PREFECT_HOME", str((run_root / "prefect").resolve()))
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _run(args) -> int:
    config = load_config(args.config, args.overrides)
    _set_env_defaults(config.run_root)
    print(f"{flow_name(config)}  {args.config}  {describe(config)}", flush=True)
    run_flow(config, verbose=args.verbose, debug=args.debug)
    return 0


def run_flow(config: PipelineConfig | ChainConfig, flow=None, verbose: bool = False, debug: bool = False) -> dict:
    """Quiet the terminal, check the tracking server, import and run the config's flow (or `flow`) against a Prefect
    server that dies with this process, print the summary; returns the flow's dict."""
    from tasks.tracking_server import check_tracking_server, tracking_uri

    check_tracking_server(tracking_uri(config.tracking.tracking_uri, config.run_root))  # before anything else runs
    terminal.prefect_logging(verbose)
    from flows.prefect_server import PrefectServer

    with PrefectServer() as server:  # unless PREFECT_API_URL names one; it boots while the libraries import
        if not verbose:
            terminal.quiet_libraries()
        flow = flow or flow_for(config)
        if not debug:
            terminal.hide_run_failures()
        with server.api():
            result = flow(config)
    print(summary.render(result), flush=True)
    return result


def flow_name(config: PipelineConfig | ChainConfig) -> str:
    if isinstance(config, ChainConfig):
        return "chain"
    return "merge" if config.merge is not None else "best_of_n" if config.best_of_n is not None else "finetune"


def flow_for(config: PipelineConfig | ChainConfig):
    """The flow a config describes: `stages:` a chain, a `merge:` or `best_of_n:` section that flow, else finetune."""
    name = flow_name(config)
    if name == "chain":
        from flows.chain import chain as flow
    elif name == "merge":
        from flows.merge import merge as flow
    elif name == "best_of_n":
        from flows.best_of_n import best_of_n as flow
    else:
        from flows.finetune import finetune as flow
    return flow


def describe(config: PipelineConfig | ChainConfig) -> str:
    """What will run, in a few words: `sft / lora`, `ties of 2 adapters`, `sft (sft / lora) -> dpo (dpo / lora)`."""
    if isinstance(config, ChainConfig):
        return " -> ".join(f"{name} ({s.train.recipe} / {s.train.method})" for name, s in config.stages.items())
    if config.merge is not None:
        return f"{config.merge.method} of {len(config.merge.sources)} sources"
    if config.best_of_n is not None:
        return f"best of {max(config.best_of_n.n)} samples, judged by {config.best_of_n.reward_model}"
    return f"{config.train.recipe} / {config.train.method}"


def _config(args) -> int:
    import yaml

    config = load_config(args.config, args.overrides)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True), end="")
    return 0


def _keys(args) -> int:
    from flows.config_keys import config_keys, render

    keys = [k for k in config_keys(PipelineConfig) if k.key.startswith(args.prefix)]
    if not keys:
        raise ConfigError(f"no config key starts with {args.prefix!r}")
    print(render(keys))
    return 0


def _ui(args) -> int:
    from flows.ui import main as ui

    _set_env_defaults(args.run_root)
    return ui(args.run_root)


def _services(args) -> int:
    from flows.services import main as services

    return services([args.action, *args.overrides, *(["--config", args.config] if args.config else [])])


def _compare(args) -> int:
    from evals.compare import main as compare

    compare([*args.run_ids, "--out", args.out])
    return 0


def _serve(args) -> int:
    config = load_config(args.config, args.overrides)
    _set_env_defaults(config.run_root)
    terminal.prefect_logging()
    terminal.quiet_libraries()  # its environment reaches the flow runs, each a subprocess
    from prefect import serve

    from flows.serve import deployment

    serve(deployment(config))
    return 0


def load_from_argv(description: str, argv: list[str] | None = None):
    """`CONFIG.yaml [key=value ...]` from the command line, validated; a bad config exits 2 with its message."""
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
    """`python -m flows.<flow> CONFIG.yaml [key=value ...]`: run `flow_fn` on the config, like `tuneforge run`."""
    config = load_from_argv(description, argv)

    def command() -> int:
        run_flow(config, flow=flow_fn)
        return 0

    return guarded(command)
