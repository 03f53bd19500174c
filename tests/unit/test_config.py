from pathlib import Path

import pytest

from tasks.config import ConfigError, PipelineConfig, apply_override, load_config

CONF = Path(__file__).resolve().parents[2] / "conf"
DEFAULT = CONF / "smollm2" / "lora.yaml"


def pipeline_yamls() -> list[Path]:
    return sorted(p for p in CONF.rglob("*.yaml"))


def test_conf_folder_has_configs():
    assert DEFAULT in pipeline_yamls()


@pytest.mark.parametrize("path", pipeline_yamls(), ids=lambda p: str(p.relative_to(CONF)))
def test_every_yaml_under_conf_loads(path):
    text = path.read_text()
    assert text.startswith("#"), f"{path} should open with the command that runs it"
    config = load_config(path)
    assert config.data.sources


def test_unknown_key_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT.read_text().replace("max_steps:", "max_stepz:"))
    with pytest.raises(ConfigError, match=r"train\.max_stepz: unknown key"):
        load_config(bad)


def test_wrong_type_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_config(DEFAULT, ["train.batch_size=four"])


def test_overrides_parse_yaml_values():
    config = load_config(DEFAULT, ["train.max_steps=3", "train.lora.target_modules=[q_proj]", "eval.perplexity=false"])
    assert config.train.max_steps == 3
    assert config.train.lora.target_modules == ["q_proj"]
    assert config.eval.perplexity is False


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "train.max_steps")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_digest_is_stable_and_sensitive():
    a, b = load_config(DEFAULT), load_config(DEFAULT)
    assert a.digest() == b.digest()
    assert load_config(DEFAULT, ["seed=1"]).digest() != a.digest()


def test_flat_params_are_dotted_and_complete():
    flat = load_config(DEFAULT).flat()
    assert flat["train.lora.rank"] == "8"
    assert flat["model.name_or_path"] == "embedded:smollm2-135m-instruct"
    assert flat["train.lora.target_modules"] == '["q_proj", "k_proj", "v_proj", "o_proj"]'


def test_data_section_is_required():
    with pytest.raises(Exception, match="data"):
        PipelineConfig.model_validate({})
