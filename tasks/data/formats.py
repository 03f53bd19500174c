"""Detect a record's format and normalise it to the one row schema every later stage reads.

Row schema: {"id", "source", "messages": [{"role", "content"}], and "chosen"/"rejected" (preference),
"label" (KTO, a bool), "text" (plain text, messages empty) or "text" + "label" (labelled text for
classification: messages empty, label a non-empty str)}.
"""
import re
from typing import Any

KIND = {
    "alpaca": "sft", "sharegpt": "sft", "messages": "sft", "prompt_completion": "sft",
    "preference": "preference", "hh_rlhf": "preference", "kto": "kto", "text": "text",
    "labelled": "classification",
}  # fmt: skip
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant"}  # fmt: skip
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


class RowError(ValueError):
    """A record does not fit its format; the caller adds file and line."""


def detect(rec: dict[str, Any]) -> str:
    """The format a record looks like, from its keys (the first match wins)."""
    keys = set(rec)
    if {"chosen", "rejected"} <= keys:
        if "prompt" in keys:
            return "preference"
        if isinstance(rec["chosen"], str) and "\n\nAssistant:" in rec["chosen"]:
            return "hh_rlhf"
        return "preference"
    if {"prompt", "completion", "label"} <= keys:
        return "kto"
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    if {"text", "label"} <= keys:  # after KTO: prompt + completion + label is feedback, not a class
        return "labelled"
    if "text" in keys:
        return "text"
    raise RowError(f"cannot detect the format from keys {sorted(keys)}")


def normalise(rec: dict[str, Any], fmt: str, rid: str, source: str) -> dict[str, Any]:
    """One normalised row; raises RowError naming the missing or bad field."""
    row: dict[str, Any] = {"id": rid, "source": source, "messages": []}
    if fmt == "alpaca":
        instruction, extra = _str(rec, "instruction"), _opt_str(rec, "input")
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        row["messages"] = _sys(rec) + [_msg("user", user), _msg("assistant", _str(rec, "output"))]
    elif fmt == "messages":
        row["messages"] = _messages(_list(rec, "messages"), "role", "content")
    elif fmt == "sharegpt":
        row["messages"] = _messages(_list(rec, "conversations"), "from", "value")
    elif fmt == "prompt_completion":
        row["messages"] = [_msg("user", _str(rec, "prompt")), _msg("assistant", _str(rec, "completion"))]
    elif fmt == "text":
        row["text"] = _str(rec, "text")
    elif fmt == "labelled":
        row["text"], row["label"] = _str(rec, "text"), _class_label(rec)
    elif fmt == "preference":
        row["messages"] = _prompt(rec)
        row["chosen"], row["rejected"] = _reply(rec, "chosen"), _reply(rec, "rejected")
    elif fmt == "hh_rlhf":
        prompt, row["chosen"] = split_hh(_str(rec, "chosen"), "chosen")
        prompt_r, row["rejected"] = split_hh(_str(rec, "rejected"), "rejected")
        if prompt != prompt_r:
            raise RowError("chosen and rejected transcripts differ before the last assistant turn")
        row["messages"] = prompt
    elif fmt == "kto":
        row["messages"] = _prompt(rec) + [_msg("assistant", _reply(rec, "completion"))]
        row["label"] = _label(rec)
    else:
        raise RowError(f"unknown format {fmt!r}")
    if fmt in ("preference", "hh_rlhf") and row["chosen"].strip() == row["rejected"].strip():
        raise RowError("chosen equals rejected")
    _check(row)
    return row


def _check(row: dict[str, Any]) -> None:
    """Empty turns and broken role order are row errors here, so validation only guards against bugs."""
    for i, m in enumerate(row["messages"]):
        if not m["content"].strip():
            raise RowError(f"turn {i} ({m['role']}) is empty")
    for key in ("chosen", "rejected", "text"):
        if key in row and not row[key].strip():
            raise RowError(f"field {key!r} is empty")
    roles = [m["role"] for m in row["messages"]]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if "text" in row:
        return
    if not roles or any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles)):
        raise RowError(f"roles must be an optional system turn then user/assistant alternating, got {roles}")
    ends_with_user = roles[-1] == "user"
    if ("chosen" in row) != ends_with_user or ("label" in row and ends_with_user):
        raise RowError(f"the prompt must end with a user turn for preference rows, else with an assistant turn; got {roles}")


def split_hh(transcript: str, field: str) -> tuple[list[dict[str, str]], str]:
    """'\\n\\nHuman: a\\n\\nAssistant: b ...' -> (prompt turns, final assistant reply)."""
    parts = _HH_TURN.split(transcript)
    if parts[0].strip() or len(parts) < 5:
        raise RowError(f"{field}: not an HH-RLHF transcript ('\\n\\nHuman: ... \\n\\nAssistant: ...')")
    turns = [_msg(ROLES[speaker.lower()], text.strip()) for speaker, text in zip(parts[1::2], parts[2::2])]
    if turns[-1]["role"] != "assistant":
        raise RowError(f"{field}: transcript does not end with an Assistant turn")
    return turns[:-1], turns[-1]["content"]


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _sys(rec: dict[str, Any]) -> list[dict[str, str]]:
    system = rec.get("system")
    return [_msg("system", system)] if isinstance(system, str) and system.strip() else []


def _str(rec: dict[str, Any], key: str) -> str:
    value = rec.get(key)
    if value is None:
        raise RowError(f"missing required field {key!r}")
    if not isinstance(value, str):
        raise RowError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _opt_str(rec: dict[str, Any], key: str) -> str:
    value = rec.get(key)
    return value if isinstance(value, str) else ""


def _list(rec: dict[str, Any], key: str) -> list[Any]:
    value = rec.get(key)
    if value is None:
        raise RowError(f"missing required field {key!r}")
    if not isinstance(value, list) or not value:
        raise RowError(f"field {key!r} must be a non-empty list")
    return value


def _messages(turns: list[Any], role_key: str, content_key: str) -> list[dict[str, str]]:
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise RowError(f"turn {i} must be an object with {role_key!r} and {content_key!r}")
        role = ROLES.get(str(turn[role_key]).lower())
        if role is None:
            raise RowError(f"turn {i}: unknown role {turn[role_key]!r}")
        if not isinstance(turn[content_key], str):
            raise RowError(f"turn {i}: {content_key!r} must be a string")
        out.append(_msg(role, turn[content_key]))
    return out


def _prompt(rec: dict[str, Any]) -> list[dict[str, str]]:
    prompt = rec.get("prompt")
    if isinstance(prompt, list):
        return _messages(prompt, "role", "content")
    return _sys(rec) + [_msg("user", _str(rec, "prompt"))]


def _reply(rec: dict[str, Any], key: str) -> str:
    value = rec.get(key)
    if isinstance(value, list):  # TRL conversational form: [{"role": "assistant", "content": ...}]
        turns = _messages(value, "role", "content")
        if turns[-1]["role"] != "assistant":
            raise RowError(f"field {key!r}: last turn must be the assistant's")
        return turns[-1]["content"]
    return _str(rec, key)


def _class_label(rec: dict[str, Any]) -> str:
    """A class name: a non-empty string (surrounding whitespace dropped), or an int/bool turned into one."""
    value = rec.get("label")
    if value is None:
        raise RowError("missing required field 'label'")
    if isinstance(value, bool):  # before int: bool is an int subclass
        value = "true" if value else "false"  # JSON's spelling, so true and "true" are one class
    elif isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"field 'label' must be a string, integer or boolean, got {type(value).__name__}")
    if not value.strip():
        raise RowError("field 'label' is empty")
    return value.strip()


def _label(rec: dict[str, Any]) -> bool:
    value = rec.get("label")
    if isinstance(value, bool):
        return value
    if value in (0, 1) or str(value).lower() in ("true", "false", "0", "1"):
        return str(value).lower() in ("true", "1")
    raise RowError(f"field 'label' must be a boolean, got {value!r}")
