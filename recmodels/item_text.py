"""The text that represents an item to the encoder, built from ``dim_items``.

Template (segments that are empty after cleaning are left out, the rest joined by ". ")::

    {title}. Category: {category}. Brand: {brand}. {description}

e.g. ``"Red ceramic mug. Category: Kitchen. Brand: Acme. A rustic red ceramic mug for tea"`` from a catalogue,
``"white hanging heart t-light holder"`` from Online Retail, whose only text is the title (the canonical order
line description).

* Order: the short fields first, the long description last, so that truncation to the encoder's
  ``max_length`` tokens cuts the description and never the title, category or brand.
* Cleaning, per field: HTML entities decoded and tags dropped (catalogue exports carry them), Unicode NFKC,
  every run of whitespace and control characters collapsed to one space, trimmed, trailing ". " punctuation
  dropped (the template adds it). A field written entirely in upper case (Online Retail's "WHITE HANGING
  HEART T-LIGHT HOLDER") is lower-cased: uncased models lower-case anyway, and cased ones (bert-base-cased,
  multilingual models) split shouting words into many rare word pieces. Mixed case is kept.
* A description equal to the title (ignoring case) is dropped: repeating it adds no information.
* Price is not part of the text: sentence encoders do not read numbers reliably; the ranker gets it as a
  feature.
* An item with no title, description, category or brand gets the empty text ``""`` and
  ``is_empty_text=True``. The encoder embeds ``""`` like any text ([CLS][SEP]), so every such item gets the
  same, consistent vector, and consumers can tell it carries no information about the item. An item with
  a category or brand but no title/description is not empty: its category still says something.
* Texts are cut to ``max_chars`` characters (at a word boundary) so that a pasted novel costs the tokenizer
  nothing; the default keeps far more than 512 tokens' worth.
"""

from __future__ import annotations

import html
import re
import unicodedata

import pandas as pd

MAX_TEXT_CHARS = 4000  # characters; about 1,000 tokens of English, beyond any BERT-family max_length
_TAG = re.compile(r"<[^>]{0,200}>")
_BLANKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b\ufeff]+")
_TRAILING = " .;,:-|"
ITEM_TEXT_COLUMNS = ("item_id", "text", "is_empty_text")


def clean_field(value: object) -> str:
    """One field cleaned as the module docstring says; missing values (None, NaN, NA) give ``""``."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):  # None, NA, NaN
        return ""
    text = str(value)
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    text = _BLANKS.sub(" ", text).strip().rstrip(_TRAILING).strip()
    if text.isupper():  # True only when there are cased letters and none of them is lower case
        text = text.lower()
    return text


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


def item_text(
    title: object = None,
    description: object = None,
    category: object = None,
    brand: object = None,
    max_chars: int = MAX_TEXT_CHARS,
) -> str:
    """The template applied to one item's fields; ``""`` when none of them holds text."""
    title_text, description_text = clean_field(title), clean_field(description)
    category_text, brand_text = clean_field(category), clean_field(brand)
    if description_text.casefold() == title_text.casefold():
        description_text = ""
    segments = [
        title_text,
        f"Category: {category_text}" if category_text else "",
        f"Brand: {brand_text}" if brand_text else "",
        description_text,
    ]
    return _cut(". ".join(segment for segment in segments if segment), max_chars)


def build_item_texts(items: pd.DataFrame, max_chars: int = MAX_TEXT_CHARS) -> pd.DataFrame:
    """One row per item, in input order: ``item_id``, ``text`` (the template), ``is_empty_text``.

    ``items`` needs ``item_id``; ``title``, ``description``, ``category`` and ``brand`` are used when present
    (``dim_items`` has them all). Other columns (``price``, ``has_text``) are ignored.
    """
    if "item_id" not in items.columns:
        raise KeyError(f"items needs an item_id column; it has {list(items.columns)}")
    columns = {name: items[name].tolist() if name in items.columns else [None] * len(items)
               for name in ("title", "description", "category", "brand")}
    texts = [
        item_text(title, description, category, brand, max_chars=max_chars)
        for title, description, category, brand in zip(
            columns["title"], columns["description"], columns["category"], columns["brand"]
        )
    ]
    return pd.DataFrame({
        "item_id": items["item_id"].to_numpy(),
        "text": texts,
        "is_empty_text": [text == "" for text in texts],
    })
