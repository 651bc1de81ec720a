"""The catalogue: product designs drawn from the vocabulary, their titles, descriptions, brands and prices.

Titles and descriptions are built from the same attributes (type, category, style, colour, material), so
text similarity carries signal. Every draw comes from the one catalogue generator, in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestration.ingest.synthetic.config import SyntheticShopConfig
from orchestration.ingest.synthetic.vocabulary import (
    BRANDS,
    CATEGORIES,
    CODE_LETTERS,
    COLOURS,
    EXTRAS,
    MATERIALS,
    PACKS,
    PRODUCT_TYPES,
    SIZES,
    STYLES,
)


@dataclass(frozen=True)
class Catalogue:
    code: np.ndarray  # (I,) object: stock code
    title: np.ndarray  # (I,) object: canonical description ("" for text-less items)
    description: np.ndarray  # (I,) object
    brand: np.ndarray  # (I,) object
    type_idx: np.ndarray  # (I,) int
    style_idx: np.ndarray  # (I,) int
    category_idx: np.ndarray  # (I,) int
    price: np.ndarray  # (I,) float, 2 decimals
    popularity: np.ndarray  # (I,) float, sums to 1
    textless: np.ndarray  # (I,) bool


@dataclass(frozen=True)
class _Design:
    """One product design: a type in a style, material, size and pack, sold in one or more colours."""

    type_idx: int
    style: int
    material: str
    size: str
    pack: str
    show_style: bool  # whether the title names the style
    show_material: bool  # whether the title names the material
    price: float
    colours: np.ndarray  # indices into COLOURS, one per variant
    lone_suffix: str  # stock-code letter of a single-colour design ("" mostly)


def build_catalogue(config: SyntheticShopConfig, rng: np.random.Generator) -> Catalogue:
    """``config.n_items`` products with distinct titles; popularity is Zipf over a random ranking."""
    categories = CATEGORIES[: config.n_categories]
    types = [t for t in range(len(PRODUCT_TYPES)) if PRODUCT_TYPES[t][1] in categories]
    n = config.n_items
    space = np.arange(10000, 100000) if n <= 60000 else np.arange(100000, 1000000)
    base_codes = rng.choice(space, size=n, replace=False)
    # Every type gets one design before any type gets a second, so small catalogues cover all types.
    type_queue = list(rng.permutation(types))
    titles: set[str] = set()
    rows: list[tuple] = []
    n_designs = 0
    attempts = 0
    while len(rows) < n:
        attempts += 1
        t = int(type_queue.pop()) if type_queue else int(rng.choice(types))
        design = _draw_design(rng, t)
        code_base = str(base_codes[n_designs])
        n_designs += 1
        numbered = n_designs if attempts > 50 * n else None  # vocabulary exhausted (huge catalogues)
        rows += _design_rows(config, rng, design, code_base, numbered, titles, room=n - len(rows))
    return _finish(config, rng, rows)


def _draw_design(rng: np.random.Generator, type_idx: int) -> _Design:
    name, category, median_price, _, _ = PRODUCT_TYPES[type_idx]
    style = int(rng.integers(len(STYLES)))
    material = str(rng.choice([m for m in MATERIALS[category] if m not in name.split(" ")]))
    size = str(rng.choice(SIZES))
    pack = str(rng.choice(PACKS))
    show_style, show_material = rng.random() < 0.85, rng.random() < 0.6
    price = max(0.1, round(float(median_price * np.exp(rng.normal(0.0, 0.35))) * (3 if pack else 1), 2))
    n_variants = 1 if rng.random() < 0.65 else int(rng.integers(2, 5))
    colours = rng.choice(len(COLOURS), size=n_variants, replace=False)
    lone_suffix = str(rng.choice(list(CODE_LETTERS))) if rng.random() < 0.1 else ""
    return _Design(
        type_idx, style, material, size, pack, show_style, show_material, price, colours, lone_suffix
    )


def _design_rows(
    config: SyntheticShopConfig,
    rng: np.random.Generator,
    design: _Design,
    code_base: str,
    numbered: int | None,
    titles: set[str],
    room: int,
) -> list[tuple]:
    """Catalogue rows of a design's colour variants, at most ``room``; a title already taken is skipped.

    ``titles`` is updated in place; ``numbered`` (when set) is appended to every title as ``NO <n>``.
    """
    category = PRODUCT_TYPES[design.type_idx][1]
    n_variants = len(design.colours)
    rows: list[tuple] = []
    for j, colour_idx in enumerate(design.colours):
        if len(rows) >= room:
            break
        colour = COLOURS[colour_idx] if (n_variants > 1 or rng.random() < 0.8) else ""
        title = _title(design, colour)
        if numbered is not None:
            title = f"{title} NO {numbered}"
        if title in titles:
            continue
        titles.add(title)
        code = code_base + (CODE_LETTERS[j] if n_variants > 1 else design.lone_suffix)
        description = _description(design, colour, extra=str(rng.choice(EXTRAS)))
        brand = "" if rng.random() < config.empty_brand_rate else str(rng.choice(BRANDS[category]))
        category_idx = CATEGORIES.index(category)
        rows.append(
            (code, title, description, brand, design.type_idx, design.style, category_idx, design.price)
        )
    return rows


def _title(design: _Design, colour: str) -> str:
    words = [
        design.size + colour,
        STYLES[design.style][0] if design.show_style else "",
        design.material if design.show_material else "",
        PRODUCT_TYPES[design.type_idx][0],
    ]
    return " ".join(w for w in " ".join(words).split(" ") if w) + design.pack


def _description(design: _Design, colour: str, extra: str) -> str:
    name, category, _, use, _ = PRODUCT_TYPES[design.type_idx]
    adjective = STYLES[design.style][0].lower()
    described = " ".join(w for w in (colour.lower(), design.material.lower(), name.lower()) if w)
    pack_note = f" ({design.pack.strip(', ').lower()})" if design.pack else ""
    return (
        f"A {adjective} {described} {use}, {STYLES[design.style][1]}. "
        f"Part of our {category} range{pack_note}. {extra}"
    ).strip()


def _finish(config: SyntheticShopConfig, rng: np.random.Generator, rows: list[tuple]) -> Catalogue:
    """Columns from the rows; blank the text of a few items; rank popularity by a random permutation."""
    n = len(rows)
    code, title, description, brand, type_idx, style_idx, category_idx, price = (
        np.array(c) for c in zip(*rows)
    )
    textless = np.zeros(n, bool)
    n_textless = int(round(config.textless_item_rate * n))
    if config.textless_item_rate > 0 and n >= 10:
        n_textless = max(n_textless, 1)
    textless[rng.choice(n, size=n_textless, replace=False)] = True
    title = np.where(textless, "", title).astype(object)
    description = np.where(textless, "", description).astype(object)
    rank = rng.permutation(n)
    popularity = 1.0 / (rank + 1.0) ** config.zipf_exponent
    return Catalogue(
        code=code.astype(object),
        title=title,
        description=description,
        brand=brand.astype(object),
        type_idx=type_idx.astype(np.int64),
        style_idx=style_idx.astype(np.int64),
        category_idx=category_idx.astype(np.int64),
        price=price.astype(float),
        popularity=popularity / popularity.sum(),
        textless=textless,
    )


def items_frame(cat: Catalogue) -> pd.DataFrame:
    """The catalogue as ``items.csv`` holds it (ITEMS_COLUMNS, prices as 2-decimal text)."""
    return pd.DataFrame(
        {
            "item_id": cat.code,
            "title": cat.title,
            "description": cat.description,
            "category": np.array(CATEGORIES, dtype=object)[cat.category_idx],
            "brand": cat.brand,
            "price": [f"{p:.2f}" for p in cat.price],
        }
    )
