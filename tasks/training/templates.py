"""Training chat templates: the model's own template plus `{% generation %}` markers for assistant-only loss.

TRL patches the templates of the model families it knows (`get_training_chat_template`); SmolLM2's
ChatML template is not among them, so a marked copy lives in `chat_templates/` (hand-written). It is
used only when it renders exactly the same text as the tokenizer's own template.
"""
from pathlib import Path

_MARKED = {p.stem: p.read_text() for p in (Path(__file__).parent / "chat_templates").glob("*.jinja")}
_PROBES = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
]


def _renders_same(tokenizer, template: str) -> bool:
    for probe in _PROBES:
        for prompt_only in (False, True):
            msgs = probe[:-1] if prompt_only else probe
            kw = dict(tokenize=False, add_generation_prompt=prompt_only)
            if tokenizer.apply_chat_template(msgs, **kw) != tokenizer.apply_chat_template(msgs, chat_template=template, **kw):
                return False
    return True


def training_chat_template(tokenizer) -> str | None:
    """A template with generation markers for this tokenizer, or None when it already has them."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if tokenizer.chat_template is None:
        raise ValueError("the tokenizer has no chat template; set train.assistant_only_loss=false for plain text")
    if has_generation_markers(tokenizer.chat_template):
        return None
    for template in _MARKED.values():
        if _renders_same(tokenizer, template):
            return template
    return get_training_chat_template(tokenizer)  # raises TRL's message when the family is unknown
