"""The `finetune` flow: prepare data -> extend tokenizer -> train -> evaluate -> package.

    python -m flows.finetune conf/smollm2/lora.yaml train.max_steps=30     # or: make pipeline

One MLflow run per flow run (resumed when the same config failed before); the flow only orders the
stages and records the outcome.
"""
from __future__ import annotations

import argparse
import sys

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.config import ConfigError, PipelineConfig, load_config
from tasks.evaluate import evaluate
from tasks.extend_tokenizer import extend_tokenizer
from tasks.model import resolve
from tasks.package import package
from tasks.prepare_data import prepare_data
from tasks.stage import RunRef, run_stage
from tasks.tracking import RunLogger, tracking_uri
from tasks.train import train


class DriftGateFailed(RuntimeError):
    pass


@flow(name="finetune")
def finetune(config: PipelineConfig) -> dict:
    uri = tracking_uri(config.tracking.tracking_uri, config.run_root)
    logger, resumed = RunLogger.start_or_resume(uri, config.tracking.experiment, config.run_name, config.digest(),
                                                artifact_root=config.run_root / "mlartifacts")
    run = RunRef(run_id=logger.run_id, tracking_uri=uri)
    run_dir = (config.run_root / "runs" / logger.run_id).resolve()
    logger.log_params(config.flat())
    logger.set_tags({"prefect.flow_run_id": flow_run.get_id() or "", "run_dir": str(run_dir)})
    get_run_logger().info(f"MLflow run {logger.run_id} ({'resumed' if resumed else 'new'}), outputs under {run_dir}")
    m = config.model
    try:
        base = resolve(m.name_or_path)
        data = run_stage(prepare_data, config.data, run_dir / "data", run, tokenizer_path=base)
        vocab = run_stage(extend_tokenizer, config.tokenizer, base, data.train_path, run_dir / "tokenizer", run,
                          m.trust_remote_code)
        trained = run_stage(train.with_options(timeout_seconds=config.train.timeout_minutes * 60), config.train,
                            base, vocab.tokenizer_dir, data.train_path, run_dir / "train", run, config.seed, m.dtype,
                            m.trust_remote_code)
        evaluation = run_stage(evaluate, config.eval, base, vocab.tokenizer_dir, trained.adapter_dir,
                               data.validation_path, run_dir / "eval", run, m.dtype, m.trust_remote_code)
        packaged = run_stage(package, config.package, m, trained, vocab.tokenizer_dir, vocab.added, data,
                             evaluation, config.model_dump(mode="json"), run_dir / "package", run)
    except BaseException as err:
        logger.finish(False, reason=f"{type(err).__name__}: {err}"[:5000])
        raise
    if not evaluation.verdict.passed:
        reason = "drift gate failed: " + "; ".join(evaluation.verdict.reasons)
        logger.finish(False, reason=reason)
        raise DriftGateFailed(reason)
    logger.finish(True)
    return {"mlflow_run_id": logger.run_id, "run_dir": str(run_dir), "package": str(packaged.package_dir),
            "registered_version": packaged.version, "aliases": packaged.aliases,
            "final_loss": trained.final_loss, "eval": evaluation.tuned}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the finetune flow.")
    parser.add_argument("config", help="YAML file under conf/")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=10")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    result = finetune(config)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
