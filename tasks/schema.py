"""Base class for every config section: unknown keys and wrong types are errors that name the key.

A field's docstring (the string literal under it) is its description: `tuneforge keys` prints it, and the Prefect
UI shows it on the flow's parameter form.
"""
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, use_attribute_docstrings=True)
