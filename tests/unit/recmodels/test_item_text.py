"""Item text: the documented template, the cleaning, and flagged empty texts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recmodels.item_text import build_item_texts, clean_field, item_text


def test_template_puts_short_fields_first_and_the_description_last():
    text = item_text(title="Red mug", description="A rustic mug for tea.", category="Kitchen", brand="Acme")
    assert text == "Red mug. Category: Kitchen. Brand: Acme. A rustic mug for tea"


def test_online_retail_style_item_is_its_lower_cased_title():
    assert item_text(title="WHITE HANGING HEART T-LIGHT HOLDER ") == "white hanging heart t-light holder"


@pytest.mark.parametrize("raw, cleaned", [
    ("  Red\t\tmug\n\nwith  handle ", "Red mug with handle"),
    ("A <b>rustic</b> mug<br/>for tea", "A rustic mug for tea"),
    ("Salt &amp; pepper", "Salt & pepper"),
    ("Mixed Case KEPT", "Mixed Case KEPT"),
    ("SET/6 RED SPOTTY CUPS", "set/6 red spotty cups"),
    ("\uff21\uff22\uff23 full-width", "ABC full-width"),  # NFKC
    ("Trailing dots...", "Trailing dots"),
    (None, ""), (float("nan"), ""), (pd.NA, ""), ("   ", ""),
])
def test_clean_field(raw, cleaned):
    assert clean_field(raw) == cleaned


def test_description_repeating_the_title_is_dropped():
    assert item_text(title="Red mug", description="RED MUG") == "Red mug"


def test_long_text_is_cut_at_a_word_boundary():
    text = item_text(title="mug " * 1000, max_chars=50)
    assert len(text) <= 50 and not text.endswith(" ") and text.split(" ")[-1] == "mug"


def test_items_without_any_text_are_flagged_not_dropped():
    items = pd.DataFrame({
        "item_id": ["a", "b", "c", "d"],
        "title": ["Red mug", None, "", np.nan],
        "description": [None, None, "   ", None],
        "category": [None, None, None, "Garden"],
        "brand": [None, None, None, None],
        "price": [1.0, 2.0, 3.0, 4.0],
        "has_text": [True, False, False, False],
    })
    texts = build_item_texts(items)
    assert list(texts.columns) == ["item_id", "text", "is_empty_text"]
    assert texts["item_id"].tolist() == ["a", "b", "c", "d"]  # input order, nothing dropped
    assert texts["text"].tolist() == ["Red mug", "", "", "Category: Garden"]
    assert texts["is_empty_text"].tolist() == [False, True, True, False]
    assert texts["is_empty_text"].dtype == bool


def test_optional_columns_may_be_missing_but_item_id_may_not():
    assert build_item_texts(pd.DataFrame({"item_id": [1], "title": ["Mug"]}))["text"].tolist() == ["Mug"]
    with pytest.raises(KeyError, match="item_id"):
        build_item_texts(pd.DataFrame({"title": ["Mug"]}))


def test_empty_frame_gives_empty_result():
    texts = build_item_texts(pd.DataFrame({"item_id": [], "title": []}))
    assert len(texts) == 0 and list(texts.columns) == ["item_id", "text", "is_empty_text"]
