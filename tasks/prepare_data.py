from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact

from tasks.data.config import DataConfig
from tasks.data.pipeline import PreparedData, prepare
from tasks.model import ModelRef
from tasks.stage import RunRef, STAGE_CACHE, STAGE_RESULTS, transient_only
from tasks.training.recipes import check_data


@task(name="prepare_data", cache_policy=STAGE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS, retries=2,
      retry_delay_seconds=10, retry_condition_fn=transient_only)
def prepare_data(cfg: DataConfig, recipe: str | None, model: ModelRef, out_dir: Path, run: RunRef) -> PreparedData:
    """Load, govern, validate and split the data; every row accounted for in the report and MLflow.

    The data's kind is checked against the recipe (None: no training) as soon as the sources are read, before any
    model loads.
    """
    check = (lambda kind: check_data(recipe, kind)) if recipe else None
    result = prepare(cfg, out_dir, tokenizer=model.load_tokenizer(), check_kind=check)
    logger = run.logger()
    logger.log_metrics({f"data/{k}": v for k, v in result.counts.items()})
    logger.log_params({f"data.license.{src}": lic for src, lic in result.licenses.items()})
    logger.set_tags({"data_digest": result.digest, "data_kind": result.kind})
    for path in (result.report_path, result.quarantine_path):
        logger.log_artifacts(path, "data")
    if result.data_docs_path is not None and Path(result.data_docs_path).exists():
        logger.log_artifacts(Path(result.data_docs_path).parent, "data/data_docs")
    logger.log_dataset(result.train_path, "train", result.digest, "training")
    logger.log_dataset(result.validation_path, "validation", result.digest, "validation")
    create_table_artifact(key="data-accounting", table=[{"count": k, "rows": v} for k, v in result.counts.items()],
                          description="Rows in, kept and dropped per reason")
    return result
