from pathlib import Path

from prefect import task

from tasks.init_from import resolve_model as resolve
from tasks.model import ModelRef
from tasks.stage import RunRef, STAGE_CACHE, STAGE_RESULTS


@task(name="resolve_model", cache_policy=STAGE_CACHE, persist_result=True, result_serializer=STAGE_RESULTS)
def resolve_model(cfg, out_dir: Path, run: RunRef) -> ModelRef:
    """The model every later stage loads: the configured base, or a previous output made loadable (`init_from`)."""
    model = resolve(cfg, out_dir, run.tracking_uri)
    run.logger().set_tags({"base_model": model.hub_id, **({"init_from": model.init_from} if model.init_from else {})})
    return model
