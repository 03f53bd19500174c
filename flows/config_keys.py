"""Every config key, dotted, with its type, default and description (`tuneforge keys`).

The description is the field's docstring (pydantic's `use_attribute_docstrings`, on for every Section) or its
`Field(description=...)`; failing both, the comment at the end of the field's line.
"""
from __future__ import annotations

import ast
import inspect
import io
import json
import textwrap
import tokenize
import types
import typing
from functools import cache
from typing import Literal, NamedTuple

from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python


class ConfigKey(NamedTuple):
    key: str
    type: str
    default: str
    doc: str


def config_keys(model: type[BaseModel], prefix: str = "") -> list[ConfigKey]:
    """Leaf keys of `model`, depth first, in declaration order; a section-valued field contributes its keys."""
    out: list[ConfigKey] = []
    comments = _trailing_comments(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        section = _section(field.annotation)
        if section is not None:
            out += config_keys(section, f"{key}.")
            continue
        default = field.get_default(call_default_factory=True)
        out.append(ConfigKey(key, type_name(field.annotation),
                             "(required)" if default is PydanticUndefined else json.dumps(to_jsonable_python(default)),
                             " ".join((field.description or comments.get(name, "")).split())))
        item = _list_item_section(field.annotation)
        if item is not None:  # data.sources: each entry's keys, as data.sources[].path
            out += config_keys(item, f"{key}[].")
    return out


def _list_item_section(annotation) -> type[BaseModel] | None:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _section(annotation) -> type[BaseModel] | None:
    """The section class of a field typed `Section` or `Section | None`; None for any other field."""
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    sections = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return sections[0] if len(sections) == 1 and all(a in (sections[0], type(None)) for a in args) else None


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def type_name(annotation) -> str:
    """`int`, `str | None`, `"ties" | "svd"`, `dict[str, "max" | "min"]`: the annotation as a reader writes it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if _is_union(annotation):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


@cache
def _trailing_comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the `# comment` closing its declaration, read from the class's source."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    cls = ast.parse(source).body[0]
    return {node.target.id: comments[node.end_lineno] for node in getattr(cls, "body", [])
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.end_lineno in comments}


def render(keys: list[ConfigKey]) -> str:
    """One block per key: `key  type = default` and its description indented under it."""
    lines = []
    for k in keys:
        lines.append(f"{k.key}  {k.type} = {k.default}")
        if k.doc:
            lines.append(f"    {k.doc}")
    return "\n".join(lines)
