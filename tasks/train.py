from pathlib import Path

from prefect import task

from tasks.stage import STAGE_CACHE, RunRef
from tasks.training.config import TrainConfig
from tasks.training.sft import TrainResult, train_sft


@task(name="train", cache_policy=STAGE_CACHE, persist_result=True)
def train(cfg: TrainConfig, base_model: str, tokenizer_dir: Path, train_path: Path, out_dir: Path, run: RunRef,
          seed: int = 0, dtype: str = "float32", trust_remote_code: bool = False) -> TrainResult:
    """Fine-tune with the configured method; resumes from the last checkpoint in out_dir. Never retried."""
    logger = run.logger()
    result = train_sft(cfg, base_model, tokenizer_dir, train_path, out_dir, logger=logger, seed=seed,
                       dtype=dtype, trust_remote_code=trust_remote_code)
    logger.log_metrics({"train/first_loss": result.first_loss, "train/final_loss": result.final_loss,
                        "train/runtime_s": result.train_runtime_s})
    logger.log_artifacts(result.history_path, "train")
    return result
