"""Each recipe names the data it trains on; a mismatch is caught on the data's kind, naming both."""
import pytest

from tasks.training.recipes import RECIPES, RecipeDataMismatch, check_data, trainer_for
from tasks.training.sft import train_sft


def test_sft_trains_on_chat_rows():
    check_data("sft", "sft")
    assert trainer_for("sft") is train_sft


@pytest.mark.parametrize("kind,named", [("preference", "preference pairs"), ("kto", "labelled completions"),
                                        ("text", "plain text")])
def test_a_mismatch_names_the_recipe_and_the_data(kind, named):
    with pytest.raises(RecipeDataMismatch, match=rf"train.recipe=sft trains on chat rows, but the prepared data is {named}"):
        check_data("sft", kind)


def test_every_recipe_in_the_config_schema_has_an_entry():
    from typing import get_args

    from tasks.training.config import Recipe

    assert set(get_args(Recipe)) == set(RECIPES)
