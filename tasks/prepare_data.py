from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact

from tasks.data.config import DataConfig
from tasks.data.pipeline import PreparedData, prepare
from tasks.stage import STAGE_CACHE, RunRef, transient_only


@task(name="prepare_data", cache_policy=STAGE_CACHE, persist_result=True, retries=2, retry_delay_seconds=10,
      retry_condition_fn=transient_only)
def prepare_data(cfg: DataConfig, out_dir: Path, run: RunRef, tokenizer_path: str | None = None) -> PreparedData:
    """Load, govern, validate and split the data; every row accounted for in the report and MLflow."""
    tokenizer = None
    if tokenizer_path:
        from tasks.model import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_path)
    result = prepare(cfg, out_dir, tokenizer=tokenizer)
    logger = run.logger()
    logger.log_metrics({f"data/{k}": v for k, v in result.counts.items()})
    logger.log_params({f"data.license.{src}": lic for src, lic in result.licenses.items()})
    logger.set_tags({"data_digest": result.digest, "data_kind": result.kind})
    for path in (result.report_path, result.quarantine_path):
        logger.log_artifacts(path, "data")
    if result.data_docs_path is not None and Path(result.data_docs_path).exists():
        logger.log_artifacts(result.data_docs_path, "data/data_docs")
    logger.log_dataset(result.train_path, "train", result.digest, "training")
    logger.log_dataset(result.validation_path, "validation", result.digest, "validation")
    create_table_artifact(key="data-accounting", table=[{"count": k, "rows": v} for k, v in result.counts.items()],
                          description="Rows in, kept and dropped per reason")
    return result
