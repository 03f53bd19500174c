import pytest

from tasks.data.config import ValidationConfig
from tasks.data.dedup import exact_key
from tasks.data.errors import ValidationFailed
from tasks.data.text import canonical
from tasks.data.validate import ValidationFrame, validate_rows


def _rows(n=5):
    return [{"id": f"s:{i}", "source": "s", "messages": [{"role": "system", "content": "Be kind"},
             {"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
            for i in range(n)]  # fmt: skip


def frame(rows, lengths, kind):
    out = ValidationFrame(kind)
    for r, n in zip(rows, lengths):
        out.add(r, n, exact_key(canonical(r)))
    return out


def test_good_rows_pass_and_data_docs_are_built(tmp_path):
    rows = _rows()
    summary, docs = validate_rows(frame(rows, [6] * len(rows), "sft"), ValidationConfig(), tmp_path)
    assert summary["success"] is True and all(e["success"] for e in summary["expectations"])
    assert {e["expectation"] for e in summary["expectations"]} >= {
        "expect_column_values_to_match_regex", "expect_column_values_to_be_unique", "expect_column_values_to_be_between"}
    assert docs == tmp_path / "data_docs" / "index.html" and "tuneforge_sft" in docs.read_text()
    assert list((tmp_path / "data_docs" / "validations").rglob("*.html"))


def test_frame_flattens_rows_to_scalar_columns():
    df = frame(_rows(2), [6, 6], "sft").to_pandas()
    assert df["roles"].tolist() == ["system,user,assistant"] * 2 and df["min_field_chars"].tolist() == [7, 7]


def test_every_broken_rule_is_named_in_the_error(tmp_path):
    rows, lens = _rows(), [6] * 5
    rows[1]["id"] = "s:0"  # duplicate id
    rows[2]["messages"].append({"role": "user", "content": "x"})  # role order
    lens[3] = 10_000  # too long
    rows[4]["messages"][1:] = rows[3]["messages"][1:]  # duplicate text
    with pytest.raises(ValidationFailed) as err:
        validate_rows(frame(rows, lens, "sft"), ValidationConfig(max_tokens=100, data_docs=False), tmp_path)
    msg = str(err.value)
    for expected in ("expect_column_values_to_be_unique(id): 2 unexpected", "expect_column_values_to_match_regex(roles): 1",
                     "expect_column_values_to_be_between(n_tokens): 1", "expect_column_values_to_be_unique(dedup_key): 2"):
        assert expected in msg
    assert "expect_column_values_to_be_in_set(source)" not in msg


def test_preference_rows_need_a_prompt_ending_with_the_user(tmp_path):
    rows = [{"id": "p:1", "source": "p", "messages": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}]
    summary, docs = validate_rows(frame(rows, [3], "preference"), ValidationConfig(data_docs=False), tmp_path)
    assert summary["success"] and docs is None
    rows[0]["messages"].append({"role": "assistant", "content": "oops"})
    with pytest.raises(ValidationFailed, match="roles"):
        validate_rows(frame(rows, [3], "preference"), ValidationConfig(data_docs=False), tmp_path)


def test_labelled_texts_need_a_text_and_a_label(tmp_path):
    rows = [{"id": f"t:{i}", "source": "t", "messages": [], "text": f"ticket {i}", "label": "billing"} for i in range(3)]
    df = frame(rows, [2] * 3, "classification").to_pandas()
    assert list(df.columns)[-2:] == ["text_chars", "label"] and df["label"].tolist() == ["billing"] * 3
    summary, _ = validate_rows(frame(rows, [2] * 3, "classification"), ValidationConfig(data_docs=False), tmp_path)
    checked = {(e["expectation"], e["column"]) for e in summary["expectations"]}
    assert {("expect_column_values_to_not_be_null", "label"), ("expect_column_value_lengths_to_be_between", "label"),
            ("expect_column_values_to_not_be_null", "text_chars")} <= checked  # fmt: skip
    rows[1]["label"], rows[2]["messages"] = "", [{"role": "user", "content": "x"}]
    with pytest.raises(ValidationFailed) as err:
        validate_rows(frame(rows, [2] * 3, "classification"), ValidationConfig(data_docs=False), tmp_path)
    assert "expect_column_value_lengths_to_be_between(label): 1 unexpected" in str(err.value)
    assert "expect_column_values_to_match_regex(roles): 1 unexpected" in str(err.value)
