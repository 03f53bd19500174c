import pytest
import yaml
from pydantic import ValidationError

from tasks.data.config import DataConfig

EXAMPLE = """
sources:
  - {name: chat, path: data/chat.jsonl, license: MIT}
  - {name: hh, path: ../shared/data/hh-rlhf/harmless-base/test.jsonl.gz, format: hh_rlhf, weight: 0.5}
pii: {actions: {US_SSN: drop}}
near_dedup: {threshold: 0.85}
license: {policy: research}
"""


def test_yaml_shape_loads_with_defaults_that_just_work():
    cfg = DataConfig.model_validate(yaml.safe_load(EXAMPLE))
    assert cfg.sources[1].format == "hh_rlhf" and cfg.sources[0].format == "auto"
    assert cfg.pii.action("US_SSN") == "drop" and cfg.pii.action("EMAIL") == "redact"
    assert (cfg.near_dedup.threshold, cfg.near_dedup.num_perm, cfg.decontamination.ngram) == (0.85, 128, 13)
    assert cfg.license.policy == "research" and cfg.license.allow_unknown is False and cfg.on_bad_row == "error"


@pytest.mark.parametrize("patch", [
    {"sources": [{"name": "a", "path": "x", "licence": "MIT"}]},
    {"dedup": {"enable": False}},
    {"sources": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]},
    {"sources": []},
    {"pii": {"actions": {"NAME": "drop"}}},
])  # fmt: skip
def test_typos_and_bad_values_are_rejected(patch):
    with pytest.raises(ValidationError):
        DataConfig.model_validate({"sources": [{"name": "a", "path": "x"}]} | patch)
