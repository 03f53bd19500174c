from pathlib import Path

import pytest

from tasks.config import ChainConfig, ConfigError, PipelineConfig, apply_override, load_config

CONF = Path(__file__).resolve().parents[2] / "conf"
DEFAULT = CONF / "smollm2" / "lora.yaml"


def pipeline_yamls() -> list[Path]:
    """Every config `tuneforge run` takes: not conf/accelerate/ (accelerate's own format, test_launch.py checks it)."""
    return sorted(p for p in CONF.rglob("*.yaml") if p.parent.name != "accelerate")


def test_conf_folder_has_configs():
    assert DEFAULT in pipeline_yamls()


@pytest.mark.parametrize("path", pipeline_yamls(), ids=lambda p: str(p.relative_to(CONF)))
def test_every_yaml_under_conf_loads(path):
    text = path.read_text()
    assert text.startswith("#"), f"{path} should open with the command that runs it"
    config = load_config(path)
    stages = config.stages.values() if isinstance(config, ChainConfig) else [config]
    assert all(stage.data.sources for stage in stages)


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


CHAIN = CONF / "smollm2" / "sft_then_sft.yaml"


def test_a_chain_is_stages_of_whole_configs_over_shared_defaults():
    chain = load_config(CHAIN)
    assert isinstance(chain, ChainConfig) and list(chain.stages) == ["support", "followup"]
    first, second = chain.stages.values()
    assert first.train.lora.rank == 8 and first.data.sources[0].name == "demo_support"  # from base: lora.yaml
    assert second.data.sources[0].name == "demo_support_b" and second.model.init_from == "stage:support"
    assert (first.run_name, second.run_name) == ("smollm2-sft-then-sft-support", "smollm2-sft-then-sft-followup")


def test_chain_overrides_reach_every_stage_or_the_named_one():
    chain = load_config(CHAIN, ["train.max_steps=3", "stages.followup.train.max_steps=2"])
    assert [s.train.max_steps for s in chain.stages.values()] == [3, 2]  # the command line wins over the file
    with pytest.raises(ConfigError, match="no stage named 'nope'"):
        load_config(CHAIN, ["stages.nope.train.max_steps=2"])


def test_chain_errors_name_the_stage_and_key():
    with pytest.raises(ConfigError, match=r"stages\.followup\.train\.batch_size"):
        load_config(CHAIN, ["stages.followup.train.batch_size=four"])


def test_init_from_must_name_an_earlier_stage(tmp_path):
    bad = tmp_path / "chain.yaml"
    bad.write_text(CHAIN.read_text().replace("stage:support", "stage:followup").replace("base: lora.yaml",
                                                                                          f"base: {DEFAULT}"))
    with pytest.raises(ConfigError, match=r"stages.followup.model.init_from=stage:followup: no earlier stage"):
        load_config(bad)


def test_a_renamed_key_says_its_new_name(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.warmup_ratio: unknown key \(renamed: use train\.warmup_fraction\)"):
        load_config(DEFAULT, ["train.warmup_ratio=0.1"])


RLHF = CONF / "smollm2" / "rlhf.yaml"


def test_the_rlhf_chain_names_its_reward_model_by_stage_and_the_chain_fills_in_the_package():
    from flows.chain import with_stage_outputs

    chain = load_config(RLHF)
    ppo = chain.stages["ppo"]
    assert [s.train.recipe for s in chain.stages.values()] == ["sft", "reward", "ppo"]
    assert ppo.train.rl.reward_model == ppo.eval.reward_model == "stage:reward"  # judged by what it trained against
    done = {"sft": {"package": "/p/sft"}, "reward": {"package": "/p/reward"}}
    filled = with_stage_outputs(ppo, done)
    assert (filled.model.init_from, filled.train.rl.reward_model, filled.eval.reward_model) == (
        "/p/sft", "/p/reward", "/p/reward")


def test_a_reward_model_must_name_an_earlier_stage():
    with pytest.raises(ConfigError, match=r"stages.reward.train.rl.reward_model=stage:ppo: no earlier stage"):
        load_config(RLHF, ["stages.reward.train.rl.reward_model=stage:ppo", "stages.reward.train.recipe=ppo"])


def test_a_variant_file_is_its_base_with_its_own_sections_on_top():
    grpo = load_config(CONF / "smollm2" / "grpo.yaml")
    ppo = load_config(CONF / "smollm2" / "ppo.yaml")
    assert grpo.train.recipe == "grpo" and grpo.run_name == "smollm2-grpo-hh"
    assert grpo.data == ppo.data and grpo.train.rl == ppo.train.rl and grpo.train.lora == ppo.train.lora


def test_variant_files_chain_and_state_metric_mappings_whole():
    fewshot = load_config(CONF / "smollm2" / "fewshot.yaml")  # base: classify.yaml, whose base is lora.yaml
    classify = load_config(CONF / "smollm2" / "classify.yaml")
    assert fewshot.data == classify.data and fewshot.model == load_config(CONF / "smollm2" / "lora.yaml").model
    assert classify.package.champion_metrics == {"classify_accuracy": "max"}  # not merged with lora.yaml's perplexity
    assert classify.eval.drift.max_drop == {}


def test_base_files_in_a_cycle_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_continual_chain_resolves_the_previous_task_to_its_prepared_rows(tmp_path):
    from flows.chain import with_stage_outputs

    chain = load_config(CONF / "smollm2" / "continual.yaml")
    assert [s.train.continual.strategy for s in chain.stages.values()] == ["naive", "naive", "ewc", "replay", "lwf"]
    stage = with_stage_outputs(chain.stages["ewc"], {"task_a": {"package": "/p/adapter", "run_dir": "/r/x"}})
    assert stage.train.continual.previous_data == "/r/x/data/train.jsonl" and stage.model.init_from == "/p/adapter"


def test_a_strategy_the_recipe_cannot_run_is_refused_on_load():
    with pytest.raises(ConfigError, match="lwf works with: sft"):
        load_config(CONF / "smollm2" / "dpo.yaml", ["train.continual.strategy=lwf"])
    with pytest.raises(ConfigError, match="needs train.continual.previous_data"):
        load_config(CONF / "smollm2" / "lora.yaml", ["train.continual.strategy=ewc"])


@pytest.mark.parametrize("recipe,method,message", [("distill", "lora", "trains the student whole"),
                                                   ("classify", "prefix", "recipe classify trains with")])
def test_knowledge_transfer_recipes_refuse_methods_they_cannot_train(recipe, method, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONF / "smollm2" / "lora.yaml", [f"train.recipe={recipe}", f"train.method={method}"])


@pytest.mark.parametrize("path", ["/nonexistent/model", "./missing-model", "runs/runs/abc/model"])
def test_a_missing_local_model_folder_is_named_on_load(path):
    with pytest.raises(ConfigError, match=r"model\.name_or_path: .*no such folder"):
        load_config(CONF / "smollm2" / "lora.yaml", [f"model.name_or_path={path}"])


def test_hub_ids_and_the_embedded_model_pass_the_folder_check():
    for ref in ("HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2", "embedded:smollm2-135m-instruct"):
        assert load_config(CONF / "smollm2" / "lora.yaml", [f"model.name_or_path={ref}"]).model.name_or_path == ref


def test_an_unknown_key_suggests_the_closest_known_one():
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT, ["train.max_stepz=3", "train.lora.rnak=4", "trian.seed=1", "train.zzz=1"])
    lines = str(err.value).splitlines()
    assert "  train.max_stepz: unknown key (did you mean train.max_steps?)" in lines
    assert "  train.lora.rnak: unknown key (did you mean train.lora.rank?)" in lines
    assert "  trian: unknown key (did you mean train?)" in lines
    assert "  train.zzz: unknown key" in lines  # nothing close: no guess


def test_a_key_given_one_section_too_high_suggests_where_it_lives():
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT, ["train.beta=0.2", "eval.max_dorp={}"])
    lines = str(err.value).splitlines()
    assert "  train.beta: unknown key (did you mean train.dpo.beta?)" in lines
    assert "  eval.max_dorp: unknown key (did you mean eval.drift.max_drop?)" in lines


def test_a_chain_stage_suggestion_names_the_stage():
    with pytest.raises(ConfigError, match=r"stages\.sft\.train\.max_stepz: unknown key "
                                          r"\(did you mean stages\.sft\.train\.max_steps\?\)"):
        load_config(CONF / "smollm2" / "sft_dpo.yaml", ["stages.sft.train.max_stepz=3"])


def test_loading_a_config_imports_no_heavy_library():
    """A config typo is reported in well under a second: validating imports none of torch, Prefect, MLflow, ..."""
    import subprocess
    import sys

    heavy = ["torch", "prefect", "mlflow", "transformers", "datasets", "peft", "trl", "lm_eval"]
    code = ("import sys, tasks.config\n"
            f"for path in {[str(p) for p in pipeline_yamls()]!r}:\n"
            "    tasks.config.load_config(path)\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stderr
