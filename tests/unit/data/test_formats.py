import gzip
import json

import pytest

from tasks.data.formats import KIND, RowError, detect, normalise, split_hh


def _n(rec, fmt=None):
    return normalise(rec, fmt or detect(rec), "s:1", "s")


def test_every_format_normalises_to_the_row_schema():
    user_asst = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert _n({"instruction": "Hi", "input": "", "output": "Hello"})["messages"] == user_asst
    assert _n({"instruction": "Add", "input": "1 2", "output": "3"})["messages"][0]["content"] == "Add\n\n1 2"
    assert _n({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]})["messages"] == user_asst
    assert _n({"messages": user_asst})["messages"] == user_asst
    assert _n({"prompt": "Hi", "completion": "Hello"})["messages"] == user_asst
    assert _n({"text": "plain"}) == {"id": "s:1", "source": "s", "messages": [], "text": "plain"}
    pref = _n({"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"})
    assert pref["messages"] == user_asst[:1] and (pref["chosen"], pref["rejected"]) == ("Hello", "Go away")
    kto = _n({"prompt": "Hi", "completion": "Hello", "label": "false"})
    assert kto["messages"] == user_asst and kto["label"] is False
    conv = _n({"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "A"}],
               "rejected": [{"role": "assistant", "content": "B"}]})  # fmt: skip
    assert (conv["chosen"], conv["rejected"]) == ("A", "B")


def test_text_with_a_label_is_a_labelled_text_but_kto_stays_kto():
    assert detect({"text": "Where is my invoice?", "label": "billing"}) == "labelled"
    assert detect({"text": "Where is my invoice?"}) == "text"
    assert detect({"prompt": "Hi", "completion": "Hello", "label": True}) == "kto"
    assert detect({"prompt": "Hi", "completion": "Hello", "label": True, "text": "extra"}) == "kto"  # KTO wins
    assert detect({"messages": [], "text": "t", "label": "x"}) == "messages"  # chat keys come first, as before
    assert (KIND["labelled"], KIND["text"], KIND["kto"]) == ("classification", "text", "kto")


def test_labelled_text_normalises_with_the_label_as_a_string():
    assert _n({"text": "Where is my invoice?", "label": "billing", "extra": 1}) == {
        "id": "s:1", "source": "s", "messages": [], "text": "Where is my invoice?", "label": "billing"}
    assert _n({"text": "t", "label": " billing \n"})["label"] == "billing"  # class names are trimmed
    assert _n({"text": "t", "label": 3})["label"] == "3"
    assert _n({"text": "t", "label": 0})["label"] == "0"
    assert _n({"text": "t", "label": True})["label"] == "true" and _n({"text": "t", "label": False})["label"] == "false"
    assert _n({"text": "t", "label": "true"})["label"] == "true"  # JSON true and "true" are one class
    kto = _n({"prompt": "Hi", "completion": "Hello", "label": 1})
    assert kto["label"] is True and "text" not in kto


def test_system_turn_is_kept_first():
    row = _n({"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello"}]})  # fmt: skip
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]


@pytest.mark.parametrize("rec, fmt, message", [
    ({"instruction": "Hi"}, "alpaca", "missing required field 'output'"),
    ({"prompt": "Hi", "chosen": "Same", "rejected": " Same "}, "preference", "chosen equals rejected"),
    ({"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}, "messages", "roles must be"),
    ({"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "y"}]}, "messages", r"turn 0 \(user\) is empty"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages", "unknown role"),
    ({"prompt": "Hi", "completion": "x", "label": "maybe"}, "kto", "must be a boolean"),
    ({"chosen": "\n\nHuman: a", "rejected": "b"}, "hh_rlhf", "not an HH-RLHF transcript"),
    ({"foo": 1}, None, "cannot detect the format"),
    ({"text": "my invoice is wrong", "label": "  "}, None, "field 'label' is empty"),
    ({"text": "my invoice is wrong", "label": None}, None, "missing required field 'label'"),
    ({"text": "my invoice is wrong", "label": 1.5}, None, "'label' must be a string, integer or boolean, got float"),
    ({"text": "my invoice is wrong", "label": ["billing"]}, None, "'label' must be a string, integer or boolean, got list"),
    ({"text": "   ", "label": "billing"}, None, "field 'text' is empty"),
    ({"text": 42, "label": "billing"}, None, "field 'text' must be a string, got int"),
])  # fmt: skip
def test_bad_records_raise_row_errors_naming_the_problem(rec, fmt, message):
    with pytest.raises(RowError, match=message):
        _n(rec, fmt)


def test_hh_rlhf_real_file_splits_into_shared_prompt_and_final_replies(shared_data):
    with gzip.open(shared_data / "hh-rlhf/harmless-base/test.jsonl.gz", "rt", encoding="utf-8") as fh:
        rec = json.loads(fh.readline())
    assert detect(rec) == "hh_rlhf"
    row = _n(rec)
    assert row["messages"][0] == {"role": "user", "content": "what are some pranks with a pen i can do?"}
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert row["chosen"].startswith("No, sorry!  All of these involve a pen")
    assert row["rejected"] != row["chosen"] and "\n\nAssistant:" not in row["rejected"]
    prompt_c, _ = split_hh(rec["chosen"], "chosen")
    prompt_r, _ = split_hh(rec["rejected"], "rejected")
    assert prompt_c == prompt_r == row["messages"]
