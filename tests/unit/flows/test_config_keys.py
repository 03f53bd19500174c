"""`tuneforge keys`: every leaf key of the config, dotted, with its type, default and description."""
from typing import Literal

from pydantic import Field

from flows.config_keys import ConfigKey, config_keys, render, type_name
from tasks.config import PipelineConfig
from tasks.schema import Section


class Inner(Section):
    rank: int = 8
    """Adapter rank."""
    kind: Literal["a", "b"] = "a"  # which one


class Outer(Section):
    name: str
    inner: Inner = Field(default_factory=Inner)
    maybe: Inner | None = None
    items: list[Inner] = []
    ratio: float | None = Field(None, description="From Field.")


def test_sections_flatten_to_dotted_keys_with_docs_from_docstrings_fields_and_comments():
    assert config_keys(Outer) == [
        ConfigKey("name", "str", "(required)", ""),
        ConfigKey("inner.rank", "int", "8", "Adapter rank."),
        ConfigKey("inner.kind", '"a" | "b"', '"a"', "which one"),
        ConfigKey("maybe.rank", "int", "8", "Adapter rank."),
        ConfigKey("maybe.kind", '"a" | "b"', '"a"', "which one"),
        ConfigKey("items", "list[Inner]", "[]", ""),
        ConfigKey("items[].rank", "int", "8", "Adapter rank."),
        ConfigKey("items[].kind", '"a" | "b"', '"a"', "which one"),
        ConfigKey("ratio", "float | None", "null", "From Field."),
    ]


def test_render_puts_the_description_under_its_key():
    assert render(config_keys(Inner)) == 'rank  int = 8\n    Adapter rank.\nkind  "a" | "b" = "a"\n    which one'


def test_type_names_read_like_annotations():
    assert type_name(dict[str, Literal["max", "min"]]) == 'dict[str, "max" | "min"]'


def test_the_pipeline_config_lists_every_section():
    keys = {k.key: k for k in config_keys(PipelineConfig)}
    assert keys["train.max_steps"].type == "int" and keys["train.max_steps"].default == "60"
    assert keys["train.max_steps"].doc.startswith("stop after this many optimizer steps")
    assert keys["data.sources[].path"].default == "(required)"
    assert {k.split(".")[0] for k in keys} >= {"model", "data", "tokenizer", "train", "eval", "package", "schedule"}
    assert sum(bool(k.doc) for k in keys.values()) > len(keys) / 2
