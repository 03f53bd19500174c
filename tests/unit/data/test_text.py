from tasks.data.text import canonical, map_fields, normalise_text, token_count, words

ROW = {"id": "s:1", "source": "s", "messages": [{"role": "user", "content": "Ｈｉ  THERE"}], "chosen": "Yes.", "rejected": "No!"}


def test_normalised_text_folds_width_case_and_whitespace():
    assert normalise_text("  Ｈｉ\tTHERE\n ß ") == "hi there ss"
    assert canonical(ROW) == "user: hi there chosen: yes. rejected: no!"
    assert words(canonical(ROW)) == ["user", "hi", "there", "chosen", "yes", "rejected", "no"]


def test_map_fields_touches_every_text_field_and_copies():
    out = map_fields(ROW, str.upper)
    assert out["messages"][0]["content"] == "Ｈｉ  THERE".upper() and (out["chosen"], out["rejected"]) == ("YES.", "NO!")
    assert ROW["chosen"] == "Yes."


def test_token_count_uses_the_tokenizer_when_given():
    assert token_count(ROW) == 4

    def tokenizer(texts, add_special_tokens):
        assert add_special_tokens is False
        return {"input_ids": [[0] * len(t) for t in texts]}  # one token per character

    assert token_count(ROW, tokenizer) == len("Ｈｉ  THERE") + len("Yes.") + len("No!")
