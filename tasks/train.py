from pathlib import Path

from prefect import task

from tasks.data.pipeline import PreparedData
from tasks.model import ModelRef
from tasks.stage import RunRef, STAGE_CACHE, STAGE_RESULTS
from tasks.training.common import TrainResult
from tasks.training.config import TrainConfig
from tasks.training.launch import train_recipe
from tasks.vocab import ExtensionResult


@task(name="train", cache_policy=STAGE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS)
def train(cfg: TrainConfig, model: ModelRef, vocab: ExtensionResult, data: PreparedData, out_dir: Path, run: RunRef,
          seed: int = 0) -> TrainResult:
    """Train `cfg.recipe` with `cfg.method` (across processes with `cfg.distributed`); resumes from the last
    checkpoint in out_dir. Never retried."""
    logger = run.logger()
    validation = cfg.recipe == "sft" and data.counts.get("rows_validation")
    result = train_recipe(cfg, model, vocab.tokenizer_dir, data.train_path, out_dir, run=run, seed=seed,
                          eval_path=data.validation_path if validation else None)
    logger.log_metrics({"train/first_loss": result.first_loss, "train/final_loss": result.final_loss,
                        "train/runtime_s": result.train_runtime_s})
    logger.set_tags({"recipe": result.recipe, **({"resumed_from": result.resumed_from} if result.resumed_from else {})})
    logger.log_artifacts(result.history_path, "train")
    return result
