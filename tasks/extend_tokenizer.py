from pathlib import Path

from prefect import task

from tasks.data.pipeline import PreparedData
from tasks.model import ModelRef
from tasks.stage import RunRef, STAGE_CACHE, STAGE_RESULTS
from tasks.vocab import ExtensionResult, TokenizerConfig
from tasks.vocab import extend_tokenizer as extend


@task(name="extend_tokenizer", cache_policy=STAGE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS)
def extend_tokenizer(cfg: TokenizerConfig, model: ModelRef, data: PreparedData, out_dir: Path,
                     run: RunRef) -> ExtensionResult:
    """Add configured and mined domain tokens with their initial embedding rows (a no-op when there are none)."""
    result = extend(cfg, model, data.train_path, out_dir)
    logger = run.logger()
    logger.log_metrics({"tokenizer/added_tokens": len(result.added),
                        "tokenizer/mined_terms": len(result.mined),
                        "tokenizer/tokens_per_word_before": result.tokens_per_word_before,
                        "tokenizer/tokens_per_word_after": result.tokens_per_word_after})
    if result.added:  # the tokenizer, its new rows and extension.json (pieces per token, mined counts)
        logger.log_artifacts(result.tokenizer_dir, "tokenizer")
    return result
