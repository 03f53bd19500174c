"""Package stage: adapter folder + model card + manifest; registered in MLflow only when the gate passed."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from prefect import task
from pydantic import BaseModel

from evals.report import write_report
from tasks.init_from import LINEAGE
from tasks.model import ModelRef
from tasks.packaging.card import record_base, write_model_card
from tasks.packaging.manifest import write_manifest
from tasks.packaging.merge import merge_adapter
from tasks.packaging.promote import promote
from tasks.packaging.pyfunc import save_pyfunc
from tasks.stage import RunRef, STAGE_CACHE, STAGE_RESULTS, transient_only
from tasks.training.common import Trained
from tasks.vocab import ExtensionResult


KINDS = {"reward": "reward_model", "classify": "classifier", "fewshot": "embedder"}  # registry tag; else generator


class PackageResult(BaseModel):
    package_dir: Path
    report_path: Path | None = None
    merged_model_dir: Path | None = None
    registered_model: str | None = None
    version: str | None = None
    aliases: list[str] = []

    def summary(self) -> str:
        if self.version is None:
            return f"packaged {self.package_dir} (not registered)"
        aliases = f" @{', @'.join(self.aliases)}" if self.aliases else ""
        return f"{self.registered_model} v{self.version}{aliases}, {self.package_dir}"


@task(name="package", cache_policy=STAGE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS, retries=2,
      retry_delay_seconds=5, retry_condition_fn=transient_only)
def package(config, model: ModelRef, trained: Trained, vocab: ExtensionResult, data, evaluation, out_dir: Path,
            run: RunRef) -> PackageResult:
    """Write the run report and the package (adapter, or full weights for full-weight methods); register and
    promote it only when the gate passed. `config` is the whole PipelineConfig (card, report, registry)."""
    out_dir = Path(out_dir)
    cfg, method = config.package, trained.method
    adapter_dir, model_dir, tokenizer_dir = trained.adapter_dir, trained.model_dir, vocab.tokenizer_dir
    logger = run.logger()
    links = json.loads(logger.client.get_run(run.run_id).data.tags.get("links", "{}"))  # set by flows.run
    report = write_report(out_dir / "report", config=config.model_dump(mode="json"), data_counts=data.counts,
                          history=_history(trained.history_path) if trained.history_path else {},
                          verdict=evaluation.verdict, samples=evaluation.samples,
                          base_scores=evaluation.base, tuned_scores=evaluation.tuned, run_id=run.run_id,
                          created=datetime.now(timezone.utc),
                          links={label: links[key] for key, label in (("mlflow", "MLflow run"),
                                                                      ("prefect", "Prefect flow run")) if key in links},
                          title=f"{config.run_name}: {config.train.recipe} / {method} on {model.name_or_path}")
    logger.log_artifacts(report.parent, "report")

    full_weights = adapter_dir is None
    pkg = out_dir / ("model" if full_weights else "adapter")
    shutil.rmtree(pkg, ignore_errors=True)
    shutil.copytree(model_dir if full_weights else adapter_dir, pkg)
    if vocab.added:
        shutil.copytree(tokenizer_dir, pkg / "tokenizer")
    if not full_weights:  # what init_from and the registry need to put the adapter back on its base
        lineage = model.model_dump(include={"dtype", "trust_remote_code", "init_from"})
        # the portable reference (the embedded model's Hub id, not this machine's cache path), also in adapter_config
        (pkg / LINEAGE).write_text(json.dumps({"name_or_path": record_base(pkg, model), **lineage}, indent=1))
    section = config.merge or config.train
    write_model_card(pkg / "README.md", name=cfg.registered_model_name, base_model=model.hub_id,
                     trained_on=model.name_or_path,
                     method=f"{trained.recipe} / {method}", config=section.model_dump(mode="json"),
                     data={"digest": data.digest, "licenses": data.licenses, "counts": data.counts},
                     evaluation=json.loads(evaluation.model_dump_json()), tokenizer_added=vocab.added)
    write_manifest(pkg)
    logger.log_artifacts(pkg, pkg.name)
    result = PackageResult(package_dir=pkg, report_path=report)
    if cfg.merged_model and _mergeable(pkg):  # the adapter folded into the base: a plain model for serving stacks
        merged = merge_adapter(model, pkg, out_dir / "merged_model")
        write_manifest(merged)
        logger.log_artifacts(merged, "merged_model")
        result.merged_model_dir = merged
    if not (cfg.register_model and evaluation.verdict.passed):
        return result

    mlflow_dir = out_dir / "mlflow_model"
    shutil.rmtree(mlflow_dir, ignore_errors=True)
    save_pyfunc(mlflow_dir, pkg, tokenizer_dir, model, full_weights, recipe=trained.recipe)
    logger.log_artifacts(mlflow_dir, "model")
    client = logger.client
    name = cfg.registered_model_name
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name, description="Adapters produced by the tuneforge finetune flow")
    source = f"{client.get_run(run.run_id).info.artifact_uri}/model"
    version = client.create_model_version(name, source, run_id=run.run_id, tags={
        "recipe": trained.recipe, "kind": KINDS.get(trained.recipe, "generator"),
        "method": method, "data_digest": data.digest,
        "base_model": model.hub_id})
    actions = promote(client, name, version.version, evaluation.tuned, evaluation.verdict.passed,
                      champion_metrics=list(cfg.champion_metrics),
                      higher_is_better={k: v == "max" for k, v in cfg.champion_metrics.items()})
    logger.set_tags({"registered_model": name, "registered_version": version.version})
    result.registered_model, result.version = name, str(version.version)
    result.aliases = actions["aliases"]
    logger.set_tags({"promotion": actions["reason"]})
    return result


def _history(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-step series from the trainer's log history (loss, learning rate, grad norm, ...)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in json.loads(Path(path).read_text()):
        if "loss" not in entry or "step" not in entry:
            continue
        for key in ("loss", "learning_rate", "grad_norm", "mean_token_accuracy"):
            if isinstance(entry.get(key), (int, float)):
                series.setdefault(key, []).append((entry["step"], float(entry[key])))
    return series


def _mergeable(pkg: Path) -> bool:
    """Adapters whose weights fold into the base (not prompt learning, not bottleneck adapters, not full weights)."""
    config = pkg / "adapter_config.json"
    return config.is_file() and json.loads(config.read_text()).get("peft_type") not in {
        "PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING", "BOTTLENECK"}
