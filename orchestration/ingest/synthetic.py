"""A seeded synthetic gift shop: the zero-config default data source.

``write_synthetic_shop`` writes two files that look like a real shop's exports:

* ``order_lines.csv.gz`` in the UCI Online Retail layout (``InvoiceNo,StockCode,Description,Quantity,
  InvoiceDate,UnitPrice,CustomerID,Country``), dirt included, and
* ``items.csv``, a generic catalogue (``item_id,title,description,category,brand,price``),

plus ``stats.json`` with the sizes and the exact number of injected dirty lines per kind.

Behaviour a model can learn: item popularity is Zipf-like; each customer has Dirichlet tastes over
categories and styles; returning customers re-buy earlier items; after buying a product type, the next
order is more likely to hold one of its complements (mug -> coaster set) in the same style; titles and
descriptions are built from the same attributes (type, category, style, colour, material), so text
similarity carries signal.

Dirt, one kind per line so that every count is unambiguous (``stats.json`` holds the exact counts):

* ``duplicate_rows``: an exact copy of a clean line, later in the same invoice;
* ``cancellation_lines``: a ``C`` invoice (customer present, quantity < 0, later timestamp). Most reverse an
  earlier clean purchase exactly (same customer, stock code, price, ``-quantity``); a few are partial
  (smaller quantity) or unmatched. ``matched_cancellations`` counts, by definition, the cancellation lines for
  which an earlier purchase line (not a ``C`` invoice, quantity > 0, customer present, parseable timestamp)
  of the same customer and stock code with quantity ``-cancelled quantity`` exists;
* ``missing_user_lines``: whole invoices with an empty CustomerID (guest checkouts);
* ``non_positive_quantity_lines``: quantity 0 or negative on a non-``C`` invoice (stock adjustments);
* ``non_positive_price_lines``: unit price 0.00 or negative;
* ``non_product_lines``: POST, DOT, M, BANK CHARGES, AMAZONFEE lines added to invoices;
* ``description_variant_lines``: whitespace/case variants of an item's description (the canonical one, equal
  to the catalogue title, stays the most frequent per stock code);
* ``bad_timestamp_lines``: an unparseable InvoiceDate;
* ``garbage_lines``: one physical line that does not split into the 8 fields (junk, truncated, an unbalanced
  quote in mid-field); never an embedded newline, so physical line counts reconcile.

Lines of text-less catalogue items (empty title and description) carry an empty Description; that is not dirt.
Generation runs in chunks of customers with one RNG per chunk (``SeedSequence(seed).spawn``), vectorised with
numpy, streaming into a gzip file, so memory stays flat for tens of millions of lines. The output is a pure
function of the config (``chunk_users`` included: it is part of the seed derivation).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ORDER_LINES_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
ITEMS_COLUMNS = ("item_id", "title", "description", "category", "brand", "price")
DIRT_KINDS = (
    "duplicate_rows",
    "cancellation_lines",
    "missing_user_lines",
    "non_positive_quantity_lines",
    "non_positive_price_lines",
    "non_product_lines",
    "description_variant_lines",
    "bad_timestamp_lines",
    "garbage_lines",
)
NON_PRODUCT_CODES = {  # stock code -> description, as in Online Retail
    "POST": "POSTAGE",
    "DOT": "DOTCOM POSTAGE",
    "M": "Manual",
    "BANK CHARGES": "Bank Charges",
    "AMAZONFEE": "AMAZON FEE",
}
FIRST_INVOICE_NUMBER = 100000  # 6-digit invoice numbers up to 900k invoices, 7 digits beyond
FIRST_CUSTOMER_ID = 10000


@dataclass(frozen=True)
class SyntheticShopConfig:
    """Size, behaviour and dirt of the synthetic shop. Rates are expected fractions of purchase lines."""

    n_users: int = 1500  # customers
    n_items: int = 400  # products in the catalogue
    n_days: int = 365  # days of history, ending at end_date (inclusive)
    end_date: str = "2024-12-31"  # last day of history, YYYY-MM-DD
    seed: int = 42  # everything random derives from this

    # Behaviour.
    n_categories: int = 8  # product categories in use (1..8; each has 5-7 product types)
    # Orders per customer = 1 + floor(lognormal(orders_log_mean, orders_log_sigma)): median 3, heavy tail.
    orders_log_mean: float = 0.9
    orders_log_sigma: float = 1.1
    max_orders_per_user: int = 250  # cap on the heavy tail
    basket_mean: float = 9.0  # mean lines (distinct items) per invoice, before in-invoice de-duplication
    basket_shape: float = 1.2  # negative-binomial shape of basket size - 1 (smaller = more dispersed)
    max_basket: int = 100  # cap on lines per invoice
    repeat_prob: float = 0.25  # share of lines of a returning customer's order that re-buy an earlier item
    complement_prob: float = 0.15  # share of lines (after the first order) that complement the previous order
    explore_prob: float = 0.15  # share of lines drawn from global popularity, ignoring taste
    category_concentration: float = 0.4  # Dirichlet alpha of category tastes (smaller = pickier customers)
    style_concentration: float = 0.5  # Dirichlet alpha of style tastes
    zipf_exponent: float = 1.0  # item popularity ~ 1 / rank**exponent
    textless_item_rate: float = 0.03  # catalogue items with empty title and description
    empty_brand_rate: float = 0.15  # catalogue items with an empty brand
    home_country_share: float = 0.88  # customers in the United Kingdom; the rest abroad

    # Dirt (one kind per line).
    duplicate_rate: float = 0.01  # exact copies of clean lines, later in the same invoice
    cancellation_rate: float = 0.02  # C-invoice lines; most reverse an earlier purchase exactly
    unmatched_cancellation_share: float = 0.1  # of cancellations: partial or without a matching purchase
    missing_user_rate: float = 0.05  # lines on invoices with an empty CustomerID (whole invoices)
    bad_quantity_rate: float = 0.002  # quantity 0 or negative on a non-C invoice
    bad_price_rate: float = 0.002  # unit price 0.00 or negative
    non_product_rate: float = 0.005  # POST / DOT / M / BANK CHARGES / AMAZONFEE lines
    description_variant_rate: float = 0.02  # trailing spaces, lower/title case, double spaces
    bad_timestamp_rate: float = 0.001  # unparseable InvoiceDate
    garbage_rate: float = 0.0005  # physical lines that do not split into the 8 fields

    # Mechanics.
    chunk_users: int = 5_000  # customers generated per chunk (bounds memory; part of the seed derivation)
    gzip_level: int = 1  # 1 = fastest


@dataclass(frozen=True)
class SyntheticShopFiles:
    directory: Path
    order_lines: Path  # directory / "order_lines.csv.gz"
    items: Path  # directory / "items.csv"
    stats: dict  # sizes and exact dirt counts (also directory / "stats.json")


# ----------------------------------------------------------------------------------------------------------
# Vocabulary. Product type: (name, category, median price in GBP, use phrase, complement types).

CATEGORIES = ("kitchen", "home decor", "lighting", "stationery", "garden", "bags", "toys", "party")
PRODUCT_TYPES = (
    ("MUG", "kitchen", 2.55, "for morning tea and coffee", ("COASTER SET", "TEAPOT")),
    ("TEAPOT", "kitchen", 8.95, "that brews four generous cups", ("MUG", "TEA TOWEL")),
    ("COASTER SET", "kitchen", 3.75, "to protect tables from hot drinks", ("MUG",)),
    ("CAKE TIN", "kitchen", 4.95, "for storing homemade bakes", ("CAKE CASES", "CAKE STAND")),
    ("CAKE CASES", "kitchen", 0.55, "for cupcakes and muffins", ("CAKE TIN",)),
    ("TEA TOWEL", "kitchen", 2.95, "for drying the dishes", ("APRON",)),
    ("APRON", "kitchen", 5.95, "for baking and cooking", ("TEA TOWEL",)),
    ("CUSHION COVER", "home decor", 3.75, "to brighten up a sofa", ("THROW BLANKET",)),
    (
        "THROW BLANKET",
        "home decor",
        12.75,
        "to snuggle under on cold evenings",
        ("CUSHION COVER", "HOT WATER BOTTLE"),
    ),
    ("HOT WATER BOTTLE", "home decor", 4.95, "to keep warm on winter nights", ("THROW BLANKET",)),
    ("PHOTO FRAME", "home decor", 2.95, "for treasured family photos", ("HANGING HEART",)),
    ("HANGING HEART", "home decor", 2.55, "to hang on doors and windows", ("PHOTO FRAME",)),
    ("WALL CLOCK", "home decor", 8.50, "with a silent sweep movement", ()),
    ("DOORMAT", "home decor", 7.95, "to welcome guests at the door", ()),
    ("CANDLE HOLDER", "lighting", 2.95, "for pillar candles", ("SCENTED CANDLE",)),
    ("T-LIGHT HOLDER", "lighting", 1.25, "that casts a warm glow", ("TEA LIGHTS",)),
    ("LANTERN", "lighting", 6.75, "for indoor and outdoor evenings", ("TEA LIGHTS",)),
    ("STRING LIGHTS", "lighting", 5.95, "with twenty warm white bulbs", ("LANTERN",)),
    ("SCENTED CANDLE", "lighting", 3.25, "with a soft long-lasting fragrance", ("CANDLE HOLDER",)),
    ("TEA LIGHTS", "lighting", 0.85, "in a pack of twenty-four", ("T-LIGHT HOLDER", "LANTERN")),
    ("NOTEBOOK", "stationery", 1.65, "with lined pages", ("PEN SET",)),
    ("PEN SET", "stationery", 2.10, "for writing and doodling", ("NOTEBOOK",)),
    ("GREETING CARD", "stationery", 0.42, "for birthdays and celebrations", ("WRAPPING PAPER",)),
    ("WRAPPING PAPER", "stationery", 0.42, "in a generous folded sheet", ("GIFT TAGS",)),
    ("GIFT TAGS", "stationery", 0.85, "to finish every present", ("WRAPPING PAPER",)),
    ("STICKER SHEET", "stationery", 0.85, "for cards and scrapbooks", ("NOTEBOOK",)),
    ("PLANT POT", "garden", 2.95, "for herbs and houseplants", ("WATERING CAN", "SEED TIN")),
    ("WATERING CAN", "garden", 6.95, "for the patio and window boxes", ("GARDEN GLOVES",)),
    ("BIRD HOUSE", "garden", 5.95, "to hang in a tree", ("BIRD FEEDER",)),
    ("BIRD FEEDER", "garden", 3.95, "for seeds and fat balls", ("BIRD HOUSE",)),
    ("GARDEN GLOVES", "garden", 2.10, "for weeding and pruning", ("PLANT POT",)),
    ("SEED TIN", "garden", 1.95, "to keep seed packets dry", ("PLANT POT",)),
    ("TOTE BAG", "bags", 2.10, "for shopping and days out", ("PURSE",)),
    ("JUMBO SHOPPER BAG", "bags", 1.95, "that carries a week of groceries", ("PURSE",)),
    ("PURSE", "bags", 2.55, "with a zip and card slots", ("KEYRING",)),
    ("WASHBAG", "bags", 3.75, "for weekends away", ()),
    ("UMBRELLA", "bags", 5.95, "that folds into any bag", ()),
    ("KEYRING", "bags", 1.25, "to keep keys together", ("PURSE",)),
    ("JIGSAW PUZZLE", "toys", 4.95, "with five hundred pieces", ("PLAYING CARDS",)),
    ("PLAYING CARDS", "toys", 1.25, "for family game nights", ("JIGSAW PUZZLE",)),
    ("SKIPPING ROPE", "toys", 1.45, "for the playground", ()),
    ("SPINNING TOP", "toys", 0.85, "that spins for ages", ()),
    ("RAG DOLL", "toys", 3.75, "with a stitched smile", ()),
    ("PARTY BUNTING", "party", 4.95, "to string across the garden", ("BALLOONS",)),
    ("PAPER NAPKINS", "party", 0.85, "in a pack of twenty", ("PAPER CUPS",)),
    ("PAPER CUPS", "party", 0.85, "in a pack of twelve", ("PAPER NAPKINS", "PAPER PLATES")),
    ("PAPER PLATES", "party", 0.85, "in a pack of twelve", ("PAPER CUPS",)),
    ("BALLOONS", "party", 0.65, "in a bag of twenty", ("PARTY BUNTING",)),
    ("CAKE STAND", "party", 9.95, "with three tiers", ("CAKE CASES",)),
)
MATERIALS = {
    "kitchen": ("CERAMIC", "ENAMEL", "TIN", "GLASS", "BAMBOO", "COTTON"),
    "home decor": ("WOODEN", "COTTON", "LINEN", "METAL", "KNITTED", "FELT"),
    "lighting": ("GLASS", "ZINC", "METAL", "WOODEN", "CERAMIC"),
    "stationery": ("PAPER", "KRAFT", "RECYCLED", "LEATHER"),
    "garden": ("ZINC", "TERRACOTTA", "WOODEN", "ENAMEL"),
    "bags": ("JUTE", "CANVAS", "COTTON", "OILCLOTH"),
    "toys": ("WOODEN", "TIN", "FELT", "CARDBOARD"),
    "party": ("PAPER", "CARDBOARD", "FABRIC", "GLITTER"),
}
STYLES = (  # title word, description phrase
    ("VINTAGE", "with an antique-inspired distressed finish"),
    ("RETRO", "with bold mid-century colours"),
    ("SCANDI", "in clean Scandinavian lines"),
    ("RUSTIC", "with a hand-made farmhouse feel"),
    ("FLORAL", "printed with a cottage garden floral pattern"),
    ("SPOTTY", "covered in cheerful polka dots"),
    ("REGENCY", "with an elegant regency tea-party motif"),
    ("MODERN", "with a minimal contemporary look"),
)
COLOURS = (
    "RED",
    "PINK",
    "BLUE",
    "GREEN",
    "IVORY",
    "WHITE",
    "BLACK",
    "CREAM",
    "GREY",
    "YELLOW",
    "ORANGE",
    "PURPLE",
)
SIZES = ("", "", "", "", "SMALL ", "LARGE ", "MINI ", "JUMBO ")
PACKS = ("", "", "", "", "", ", SET OF 3", ", SET OF 6")
EXTRAS = ("Gift boxed.", "Hand finished.", "Wipe clean.", "Makes a lovely gift.", "Designed in England.", "")
BRANDS = {
    "kitchen": ("Hearth & Home", "Pantry Lane"),
    "home decor": ("Little Nook", "Hearth & Home"),
    "lighting": ("Glow Works", "Nordlys"),
    "stationery": ("Paper Lantern Co", "Inkwell"),
    "garden": ("Bramble & Co", "Potting Shed"),
    "bags": ("Carry On", "Marigold Studio"),
    "toys": ("Tinker Toys", "Little Nook"),
    "party": ("Party Parade", "Marigold Studio"),
}
FOREIGN_COUNTRIES = (  # country, weight
    ("Germany", 0.22),
    ("France", 0.20),
    ("EIRE", 0.12),
    ("Spain", 0.07),
    ("Netherlands", 0.07),
    ("Belgium", 0.06),
    ("Switzerland", 0.05),
    ("Portugal", 0.05),
    ("Australia", 0.04),
    ("Norway", 0.04),
    ("Italy", 0.04),
    ("Sweden", 0.04),
)
HOUR_WEIGHTS = np.array(
    [0, 0, 0, 0, 0, 0, 0, 0.3, 2, 4, 6, 7, 8, 7, 6, 5, 3, 1.5, 0.8, 0.5, 0.3, 0, 0, 0], float
)
WEEKDAY_WEIGHTS = np.array([1.0, 1.1, 1.1, 1.3, 0.8, 0.15, 0.6])  # Monday..Sunday
QUANTITIES = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 24, 36, 48])
QUANTITY_WEIGHTS = np.array([0.28, 0.15, 0.07, 0.07, 0.02, 0.08, 0.025, 0.04, 0.11, 0.045, 0.007, 0.011])
BAD_TIMESTAMPS = (
    "31/02/2011 25:61",
    "not a date",
    "2024-02-30 12:00:00",
    "00/00/0000 00:00",
    "2023-13-01 10:15:00",
    "#VALUE!",
    "2011-12-09 24:61:00",
    "??",
)
# Characters for junk lines: no comma, quote or anything a reader could take for a line break.
JUNK_ALPHABET = np.array(
    list("\x01\x02\x07\x1b\x7fÿþ�§¤#@!$%^&*~|;:<>?=+_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefxyz0123456789")
)
VARIANT_KINDS = 4  # trailing spaces, lower case, title case, double space


# ----------------------------------------------------------------------------------------------------------
# Catalogue.


@dataclass(frozen=True)
class _Catalogue:
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


def _build_catalogue(config: SyntheticShopConfig, rng: np.random.Generator) -> _Catalogue:
    categories = CATEGORIES[: config.n_categories]
    types = [t for t in range(len(PRODUCT_TYPES)) if PRODUCT_TYPES[t][1] in categories]
    n = config.n_items
    space = np.arange(10000, 100000) if n <= 60000 else np.arange(100000, 1000000)
    base_codes = rng.choice(space, size=n, replace=False)
    # Every type gets one design before any type gets a second, so small catalogues cover all types.
    type_queue = list(rng.permutation(types))
    titles: set[str] = set()
    rows: list[tuple] = []
    design = 0
    attempts = 0
    while len(rows) < n:
        attempts += 1
        t = int(type_queue.pop()) if type_queue else int(rng.choice(types))
        name, category, median_price, use, _ = PRODUCT_TYPES[t]
        style = int(rng.integers(len(STYLES)))
        material = str(rng.choice([m for m in MATERIALS[category] if m not in name.split(" ")]))
        size = str(rng.choice(SIZES))
        pack = str(rng.choice(PACKS))
        show_style, show_material = rng.random() < 0.85, rng.random() < 0.6
        price = max(0.1, round(float(median_price * np.exp(rng.normal(0.0, 0.35))) * (3 if pack else 1), 2))
        n_variants = 1 if rng.random() < 0.65 else int(rng.integers(2, 5))
        colours = rng.choice(len(COLOURS), size=n_variants, replace=False)
        lone_suffix = str(rng.choice(list("ABCDEFGHJKLMNPRSW"))) if rng.random() < 0.1 else ""
        code_base = str(base_codes[design])
        design += 1
        for j, colour_idx in enumerate(colours):
            if len(rows) >= n:
                break
            colour = COLOURS[colour_idx] if (n_variants > 1 or rng.random() < 0.8) else ""
            words = [
                size + colour,
                STYLES[style][0] if show_style else "",
                material if show_material else "",
                name,
            ]
            title = " ".join(w for w in " ".join(words).split(" ") if w) + pack
            if attempts > 50 * n:  # vocabulary exhausted (huge catalogues): number the designs
                title = f"{title} NO {design}"
            if title in titles:
                continue
            titles.add(title)
            code = code_base + ("ABCDEFGHJKLMNPRSW"[j] if n_variants > 1 else lone_suffix)
            adjective = STYLES[style][0].lower()
            described = " ".join(w for w in (colour.lower(), material.lower(), name.lower()) if w)
            extra = str(rng.choice(EXTRAS))
            pack_note = f" ({pack.strip(', ').lower()})" if pack else ""
            description = (
                f"A {adjective} {described} {use}, {STYLES[style][1]}. "
                f"Part of our {category} range{pack_note}. {extra}"
            ).strip()
            brand = "" if rng.random() < config.empty_brand_rate else str(rng.choice(BRANDS[category]))
            rows.append((code, title, description, brand, t, style, categories.index(category), price))
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
    return _Catalogue(
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


class _GroupSampler:
    """Draw items by popularity within a group (category x style, type, ...), vectorised over lines."""

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
        order = np.argsort(group, kind="stable")
        self.items = order
        sorted_group = group[order]
        self.count = np.bincount(group, minlength=n_groups)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        w = weight[order]
        group_total = np.bincount(sorted_group, weights=w, minlength=n_groups)
        within = np.cumsum(w) - np.repeat(np.cumsum(group_total) - group_total, self.count)
        within = within / group_total[sorted_group]
        within[self.start[self.count > 0] + self.count[self.count > 0] - 1] = 1.0
        self.cum = sorted_group + within  # group g's items span (g, g + 1]

    def has(self, group: np.ndarray) -> np.ndarray:
        return self.count[group] > 0

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Items for lines whose groups are non-empty (check with ``has``); u uniform in [0, 1)."""
        pos = np.searchsorted(self.cum, group + u, side="right")
        pos = np.clip(pos, self.start[group], self.start[group] + self.count[group] - 1)
        return self.items[pos]


# ----------------------------------------------------------------------------------------------------------
# Output fields.


def _csv_field(text: str) -> str:
    """Quote like csv.QUOTE_MINIMAL, and also around leading/trailing whitespace (so no reader trims it)."""
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def _variants(title: str) -> list[str]:
    """The description variants of a canonical title, one per VARIANT_KINDS, each different from it."""
    words = title.split(" ")
    doubled = " ".join(words[:1]) + "  " + " ".join(words[1:]) if len(words) > 1 else title + "  "
    lower = title.lower() if title.lower() != title else title + " "
    titled = title.title() if title.title() not in (title, lower) else title + "   "
    return [title + " ", lower, titled, doubled]


@dataclass(frozen=True)
class _Tables:
    """Per-item and per-code strings shared by all chunks."""

    # object: "code,description" for the items (canonical, then each variant kind), then the non-products
    code_desc: np.ndarray
    price: np.ndarray  # object: formatted catalogue price per item
    n_items: int

    def variant_id(self, item: np.ndarray, kind: np.ndarray) -> np.ndarray:
        return (kind + 1) * self.n_items + item

    def non_product_id(self, k: np.ndarray) -> np.ndarray:
        return (VARIANT_KINDS + 1) * self.n_items + k


def _build_tables(cat: _Catalogue) -> _Tables:
    n = len(cat.code)
    code_desc = [f"{c},{_csv_field(t)}" for c, t in zip(cat.code, cat.title)]
    variants = [_variants(t) if t else [t] * VARIANT_KINDS for t in cat.title]
    for k in range(VARIANT_KINDS):
        code_desc += [f"{c},{_csv_field(v[k])}" for c, v in zip(cat.code, variants)]
    code_desc += [f"{c},{d}" for c, d in NON_PRODUCT_CODES.items()]
    return _Tables(
        np.array(code_desc, dtype=object), np.array([f"{p:.2f}" for p in cat.price], dtype=object), n
    )


def _format_prices(values: np.ndarray) -> np.ndarray:
    return np.array([f"{v:.2f}" for v in values], dtype=object)


# ----------------------------------------------------------------------------------------------------------
# One chunk of customers.


@dataclass
class _Context:
    config: SyntheticShopConfig
    cat: _Catalogue
    tables: _Tables
    taste_sampler: _GroupSampler  # group = category * n_styles + style
    category_sampler: _GroupSampler  # group = category
    type_style_sampler: _GroupSampler  # group = type * n_styles + style
    type_sampler: _GroupSampler  # group = type
    global_cum: np.ndarray  # cumulative popularity over all items
    complements: np.ndarray  # (n_types, max_k) complement type ids, -1 padded
    n_complements: np.ndarray  # (n_types,)
    start_epoch: int  # seconds: day 0 at 00:00:00
    end_epoch: int  # seconds: end_date 23:59:59
    day_weight: np.ndarray  # (n_days,) relative order intensity
    countries: np.ndarray  # object
    country_p: np.ndarray


def _make_context(config: SyntheticShopConfig, cat: _Catalogue) -> _Context:
    n_styles, n_types = len(STYLES), len(PRODUCT_TYPES)
    names = [t[0] for t in PRODUCT_TYPES]
    max_k = max(len(t[4]) for t in PRODUCT_TYPES)
    complements = np.full((n_types, max_k), -1, np.int64)
    n_complements = np.zeros(n_types, np.int64)
    present = set(cat.type_idx.tolist())
    for t, spec in enumerate(PRODUCT_TYPES):
        targets = [names.index(c) for c in spec[4] if names.index(c) in present]
        complements[t, : len(targets)] = targets
        n_complements[t] = len(targets)
    end = np.datetime64(config.end_date, "D")
    start = end - np.timedelta64(config.n_days - 1, "D")
    days = start + np.arange(config.n_days)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64)
    christmas_rush = 1.0 + 0.8 * np.exp(-(((day_of_year - 320) / 25.0) ** 2))
    countries = ["United Kingdom"] + [c for c, _ in FOREIGN_COUNTRIES]
    foreign = np.array([w for _, w in FOREIGN_COUNTRIES])
    country_p = np.concatenate(
        [[config.home_country_share], (1 - config.home_country_share) * foreign / foreign.sum()]
    )
    return _Context(
        config=config,
        cat=cat,
        tables=_build_tables(cat),
        taste_sampler=_GroupSampler(
            cat.category_idx * n_styles + cat.style_idx, cat.popularity, config.n_categories * n_styles
        ),
        category_sampler=_GroupSampler(cat.category_idx, cat.popularity, config.n_categories),
        type_style_sampler=_GroupSampler(
            cat.type_idx * n_styles + cat.style_idx, cat.popularity, n_types * n_styles
        ),
        type_sampler=_GroupSampler(cat.type_idx, cat.popularity, n_types),
        global_cum=np.cumsum(cat.popularity),
        complements=complements,
        n_complements=n_complements,
        start_epoch=int(start.astype("datetime64[s]").astype(np.int64)),
        end_epoch=int((end + 1).astype("datetime64[s]").astype(np.int64)) - 1,
        day_weight=WEEKDAY_WEIGHTS[weekday] * christmas_rush,
        countries=np.array(countries, dtype=object),
        country_p=country_p / country_p.sum(),
    )


def _sample_rows(cum_rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn from each row's cumulative distribution (rows of cum_rows end at ~1)."""
    return np.minimum((u[:, None] > cum_rows).sum(axis=1), cum_rows.shape[1] - 1)


def _global_items(ctx: _Context, u: np.ndarray) -> np.ndarray:
    return np.minimum(
        np.searchsorted(ctx.global_cum, u * ctx.global_cum[-1], side="right"), len(ctx.global_cum) - 1
    )


def _first_index(sorted_keys: np.ndarray, n: int) -> np.ndarray:
    """For keys sorted ascending in 0..n-1: the first position of each key (of the next key if absent)."""
    return np.searchsorted(sorted_keys, np.arange(n), side="left")


def _generate_chunk(ctx: _Context, rng: np.random.Generator, user_lo: int, user_hi: int, first_invoice: int):
    """Return (lines, counts, n_invoices) for customers user_lo..user_hi-1."""
    cfg, cat, tables = ctx.config, ctx.cat, ctx.tables
    n_styles = len(STYLES)
    n_users = user_hi - user_lo

    # Customers: tastes, country, number of orders, active window.
    cat_cum = np.cumsum(
        rng.dirichlet(np.full(cfg.n_categories, cfg.category_concentration), size=n_users), axis=1
    )
    style_cum = np.cumsum(rng.dirichlet(np.full(n_styles, cfg.style_concentration), size=n_users), axis=1)
    country = rng.choice(len(ctx.countries), size=n_users, p=ctx.country_p)
    n_orders = 1 + np.floor(rng.lognormal(cfg.orders_log_mean, cfg.orders_log_sigma, size=n_users)).astype(
        np.int64
    )
    n_orders = np.minimum(n_orders, cfg.max_orders_per_user)
    window_start = rng.random(n_users) * cfg.n_days
    window_len = (cfg.n_days - window_start) * np.sqrt(rng.random(n_users))

    # Orders: day by intensity (two-try rejection), hour by shop hours; chronological per customer.
    order_user = np.repeat(np.arange(n_users), n_orders)
    n_ord = len(order_user)
    day = window_start[order_user] + window_len[order_user] * rng.random(n_ord)
    retry = rng.random(n_ord) * ctx.day_weight.max() > ctx.day_weight[day.astype(np.int64)]
    day[retry] = window_start[order_user[retry]] + window_len[order_user[retry]] * rng.random(
        int(retry.sum())
    )
    hour = rng.choice(24, size=n_ord, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    order_ts = ctx.start_epoch + day.astype(np.int64) * 86400 + hour * 3600 + rng.integers(0, 3600, n_ord)
    perm = np.lexsort((order_ts, order_user))
    order_ts = order_ts[perm]  # order_user is already sorted and unchanged by perm
    user_first_order = _first_index(order_user, n_users)
    is_first_order = np.arange(n_ord) == user_first_order[order_user]

    # Lines: kind (taste / repeat / complement), base item by taste for every line.
    r = cfg.basket_shape
    basket = 1 + rng.negative_binomial(r, r / (r + cfg.basket_mean - 1), size=n_ord)
    basket = np.minimum(basket, cfg.max_basket)
    line_order = np.repeat(np.arange(n_ord), basket)
    line_user = order_user[line_order]
    n_lines = len(line_order)
    u = rng.random(n_lines)
    returning = ~is_first_order[line_order]
    is_repeat = returning & (u < cfg.repeat_prob)
    is_complement = returning & ~is_repeat & (u < cfg.repeat_prob + cfg.complement_prob)
    category = _sample_rows(cat_cum[line_user], rng.random(n_lines))
    style = _sample_rows(style_cum[line_user], rng.random(n_lines))
    item = _global_items(ctx, rng.random(n_lines))  # explore lines keep this
    u_item = rng.random(n_lines)
    taste = rng.random(n_lines) >= cfg.explore_prob
    group = category * n_styles + style
    by_style = taste & ctx.taste_sampler.has(group)
    item[by_style] = ctx.taste_sampler.sample(group[by_style], u_item[by_style])
    by_category = taste & ~by_style & ctx.category_sampler.has(category)
    item[by_category] = ctx.category_sampler.sample(category[by_category], u_item[by_category])

    # Complements and repeats draw from base lines (not from other complements/repeats): no chains.
    is_base = ~is_repeat & ~is_complement
    base_idx = np.flatnonzero(is_base)
    base_per_order = np.bincount(line_order[base_idx], minlength=n_ord)
    base_start = np.concatenate([[0], np.cumsum(base_per_order)[:-1]])
    comp = np.flatnonzero(is_complement)
    prev = line_order[comp] - 1
    ok = base_per_order[prev] > 0
    comp, prev = comp[ok], prev[ok]
    src = base_idx[base_start[prev] + (rng.random(len(comp)) * base_per_order[prev]).astype(np.int64)]
    src_type, src_style = cat.type_idx[item[src]], cat.style_idx[item[src]]
    k = ctx.n_complements[src_type]
    pick = (rng.random(len(comp)) * np.maximum(k, 1)).astype(np.int64)
    target_type = np.where(
        k > 0, ctx.complements[src_type, np.minimum(pick, ctx.complements.shape[1] - 1)], -1
    )
    u_comp = rng.random(len(comp))
    ts_group = np.maximum(target_type, 0) * n_styles + src_style
    same_style = (target_type >= 0) & ctx.type_style_sampler.has(ts_group)
    item[comp[same_style]] = ctx.type_style_sampler.sample(ts_group[same_style], u_comp[same_style])
    any_style = (target_type >= 0) & ~same_style
    any_style &= ctx.type_sampler.has(np.maximum(target_type, 0))
    item[comp[any_style]] = ctx.type_sampler.sample(target_type[any_style], u_comp[any_style])
    rep = np.flatnonzero(is_repeat)
    lo = base_start[user_first_order[line_user[rep]]]
    hi = base_start[line_order[rep]]
    ok = hi > lo
    rep, lo, hi = rep[ok], lo[ok], hi[ok]
    rep_src = base_idx[lo + (rng.random(len(rep)) * (hi - lo)).astype(np.int64)]
    item[rep] = item[rep_src]

    # Quantities: cheap items in bigger packs; half of the repeats re-buy the same quantity.
    q_idx = rng.choice(len(QUANTITIES), size=n_lines, p=QUANTITY_WEIGHTS / QUANTITY_WEIGHTS.sum())
    price = cat.price[item]
    q_idx = np.clip(q_idx + 2 * (price < 1.0) - 2 * (price > 8.0), 0, len(QUANTITIES) - 1)
    qty = QUANTITIES[q_idx]
    same_qty = rng.random(len(rep)) < 0.5
    qty[rep[same_qty]] = qty[rep_src[same_qty]]

    # One line per distinct item per invoice (keep the first), preserving line order.
    keep = np.sort(np.unique(line_order * cat.code.size + item, return_index=True)[1])
    line_order, line_user, item, qty = line_order[keep], line_user[keep], item[keep], qty[keep]
    n_lines = len(item)
    order_line_start = _first_index(line_order, n_ord)
    order_n_lines = np.bincount(line_order, minlength=n_ord)
    line_pos = np.arange(n_lines) - order_line_start[line_order]
    line_ts = order_ts[line_order]

    # In-place dirt: whole guest invoices, then at most one other kind per line.
    order_missing = rng.random(n_ord) < cfg.missing_user_rate
    line_missing = order_missing[line_order]
    scale = 1.0 / max(1e-9, 1.0 - cfg.missing_user_rate)
    rates = np.array(
        [cfg.bad_quantity_rate, cfg.bad_price_rate, cfg.description_variant_rate, cfg.bad_timestamp_rate]
    )
    kind = np.searchsorted(np.cumsum(rates * scale), rng.random(n_lines), side="right")  # 4 = none
    kind[line_missing] = 4
    variant = np.flatnonzero(kind == 2)
    kind[variant] = 4
    variant = variant[~cat.textless[item[variant]]]
    # Cap variants per item in this chunk so that the canonical description stays the strict majority.
    item_lines = np.bincount(item, minlength=cat.code.size)
    by_item = variant[np.argsort(item[variant], kind="stable")]
    rank = np.arange(len(by_item)) - _first_index(item[by_item], cat.code.size)[item[by_item]]
    kind[by_item[rank < (item_lines[item[by_item]] - 1) // 2]] = 2
    bad_qty, bad_price, variant, bad_ts = (np.flatnonzero(kind == j) for j in range(4))
    clean = np.flatnonzero((kind == 4) & ~line_missing)

    code_desc_id = item.copy()
    code_desc_id[variant] = tables.variant_id(item[variant], rng.integers(0, VARIANT_KINDS, len(variant)))
    qty[bad_qty] = np.where(rng.random(len(bad_qty)) < 0.3, 0, -rng.integers(1, 13, len(bad_qty)))
    price_field = tables.price[item]
    zero = rng.random(len(bad_price)) < 0.8
    price_field[bad_price] = np.where(zero, "0.00", _format_prices(-cat.price[item[bad_price]]))
    # -1: the invoice's timestamp; otherwise an index into BAD_TIMESTAMPS.
    date_code = np.full(n_lines, -1, np.int64)
    date_code[bad_ts] = rng.integers(0, len(BAD_TIMESTAMPS), len(bad_ts))

    # Added dirt: duplicates, cancellations, non-product lines, garbage.
    n_dup = min(rng.binomial(n_lines, cfg.duplicate_rate), len(clean))
    dup_src = np.sort(rng.choice(clean, size=n_dup, replace=False))
    dup_after = line_pos[dup_src] + (
        rng.random(n_dup) * (order_n_lines[line_order[dup_src]] - line_pos[dup_src])
    ).astype(np.int64)

    cancellable = clean[line_ts[clean] < ctx.end_epoch - 3600]
    n_cancel = min(rng.binomial(n_lines, cfg.cancellation_rate), len(cancellable))
    n_odd = rng.binomial(n_cancel, cfg.unmatched_cancellation_share)
    n_unmatched = n_odd // 2
    partial_pool = cancellable[qty[cancellable] >= 2]
    n_partial = min(n_odd - n_unmatched, len(partial_pool))
    partial_src = rng.choice(partial_pool, size=n_partial, replace=False)
    exact_src = rng.choice(
        np.setdiff1d(cancellable, partial_src),
        size=min(n_cancel - n_odd, len(cancellable) - n_partial),
        replace=False,
    )
    c_src = np.concatenate([exact_src, partial_src])
    c_user = line_user[c_src]
    c_item = item[c_src]
    c_qty = np.concatenate(
        [-qty[exact_src], -(1 + (rng.random(n_partial) * (qty[partial_src] - 1)).astype(np.int64))]
    )
    # Cancelled an hour to a few days later; near the end of history, uniformly within what is left.
    delay = 3600 + rng.exponential(2 * 86400, len(c_src)).astype(np.int64)
    room = ctx.end_epoch - line_ts[c_src]
    late = delay > room
    delay[late] = 3600 + (rng.random(int(late.sum())) * (room[late] - 3600)).astype(np.int64)
    c_ts = line_ts[c_src] + delay
    c_user = np.concatenate([c_user, rng.integers(0, n_users, n_unmatched)])
    c_item = np.concatenate([c_item, _global_items(ctx, rng.random(n_unmatched))])
    c_qty = np.concatenate([c_qty, -rng.integers(1, 7, n_unmatched)])
    c_ts = np.concatenate([c_ts, rng.integers(ctx.start_epoch, ctx.end_epoch + 1, n_unmatched)])
    n_c = len(c_user)

    eligible_orders = np.flatnonzero(~order_missing)
    n_np = min(rng.binomial(n_lines, cfg.non_product_rate), len(eligible_orders))
    np_order = np.sort(rng.choice(eligible_orders, size=n_np, replace=False))
    np_code = rng.choice(len(NON_PRODUCT_CODES), size=n_np, p=[0.5, 0.2, 0.15, 0.05, 0.1])
    np_qty = np.where(np_code == 0, rng.integers(1, 4, n_np), 1)
    np_price = np.select(
        [np_code == 0, np_code == 1, np_code == 3],
        [
            np.array([18.0, 15.0, 40.0])[rng.integers(0, 3, n_np)],
            np.round(rng.lognormal(4.5, 0.8, n_np), 2),
            15.0,
        ],
        np.round(rng.lognormal(3.0, 1.5, n_np), 2),
    )
    np_price = np.maximum(np_price, 0.01)

    n_garbage = rng.binomial(n_lines, cfg.garbage_rate)
    g_order = rng.integers(0, n_ord, n_garbage)
    g_after = (rng.random(n_garbage) * (order_n_lines[g_order] + 1)).astype(np.int64)
    garbage = _garbage_lines(rng, ctx, n_garbage)

    # Invoices: purchases then cancellations, numbered chronologically within the chunk.
    inv_ts = np.concatenate([order_ts, c_ts])
    inv_user = np.concatenate([order_user, c_user])
    inv_missing = np.concatenate([order_missing, np.zeros(n_c, bool)])
    inv_is_c = np.concatenate([np.zeros(n_ord, bool), np.ones(n_c, bool)])
    inv_rank = np.empty(n_ord + n_c, np.int64)
    inv_rank[np.lexsort((np.arange(n_ord + n_c), inv_ts))] = np.arange(n_ord + n_c)
    inv_number = (first_invoice + inv_rank).astype(str).astype(object)
    inv_str = np.where(inv_is_c, "C" + inv_number, inv_number)
    date_str = np.char.replace(np.datetime_as_string(inv_ts.astype("datetime64[s]")), "T", " ").astype(object)
    customer = (FIRST_CUSTOMER_ID + user_lo + inv_user).astype(str).astype(object)
    cust_country = np.where(inv_missing, "", customer) + "," + ctx.countries[country[inv_user]]

    # All lines: (invoice, position) sort keys; positions 4k (purchase), 4k+1 (duplicate), 4k+2 (non-product),
    # 4k+3 (garbage), so duplicates follow their original and postage closes the invoice.
    cols = {
        "inv": [line_order, line_order[dup_src], n_ord + np.arange(n_c), np_order, g_order],
        "pos": [
            4 * line_pos,
            4 * dup_after + 1,
            np.zeros(n_c, np.int64),
            4 * order_n_lines[np_order] + 2,
            4 * g_after + 3,
        ],
        "cd": [
            code_desc_id,
            code_desc_id[dup_src],
            c_item,
            tables.non_product_id(np_code),
            np.zeros(n_garbage, np.int64),
        ],
        "qty": [qty, qty[dup_src], c_qty, np_qty, np.zeros(n_garbage, np.int64)],
        "price": [
            price_field,
            price_field[dup_src],
            tables.price[c_item],
            _format_prices(np_price),
            np.full(n_garbage, "", object),
        ],
        "date": [date_code, date_code[dup_src], np.full(n_c + n_np + n_garbage, -1, np.int64)],
    }
    inv, pos, cd, q, pr, dt = (np.concatenate(v) for v in cols.values())
    order = np.lexsort((pos, inv_rank[inv]))
    inv, cd, q, pr, dt = inv[order], cd[order], q[order], pr[order], dt[order]
    dates = np.where(dt < 0, date_str[inv], np.array(BAD_TIMESTAMPS, dtype=object)[dt])
    fields = (inv_str[inv], tables.code_desc[cd], q.astype(str).astype(object), dates, pr, cust_country[inv])
    lines = list(map(",".join, zip(*(f.tolist() for f in fields))))
    garbage_at = np.flatnonzero(order >= len(order) - n_garbage)
    for at, src in zip(garbage_at.tolist(), (order[garbage_at] - (len(order) - n_garbage)).tolist()):
        lines[at] = garbage[src]

    counts = {
        "duplicate_rows": n_dup,
        "cancellation_lines": n_c,
        "matched_cancellations": _matched_cancellations(
            line_user, item, qty, line_ts, line_missing | (kind == 3), c_user, c_item, c_qty, c_ts
        ),
        "missing_user_lines": int(line_missing.sum()),
        "non_positive_quantity_lines": len(bad_qty),
        "non_positive_price_lines": len(bad_price),
        "non_product_lines": n_np,
        "description_variant_lines": len(variant),
        "bad_timestamp_lines": len(bad_ts),
        "garbage_lines": n_garbage,
        "purchase_lines": n_lines,
        "clean_lines": len(clean),
        "repeat_draws": len(rep),  # lines drawn as re-buys (before in-invoice de-duplication)
        "complement_draws": int(same_style.sum() + any_style.sum()),  # lines drawn as complements (idem)
        "purchase_invoices": n_ord,
        "guest_invoices": int(order_missing.sum()),
    }
    return lines, counts, n_ord + n_c


def _matched_cancellations(p_user, p_item, p_qty, p_ts, p_excluded, c_user, c_item, c_qty, c_ts) -> int:
    """Cancellation lines with an earlier purchase (customer, parseable time) of the same user/item/-qty."""
    keep = ~p_excluded & (p_qty > 0)
    purchases = pd.DataFrame({"u": p_user[keep], "i": p_item[keep], "q": p_qty[keep], "t": p_ts[keep]})
    purchases = purchases.groupby(["u", "i", "q"], as_index=False)["t"].min()
    cancels = pd.DataFrame({"u": c_user, "i": c_item, "q": -c_qty, "tc": c_ts, "c": np.arange(len(c_user))})
    joined = cancels.merge(purchases, on=["u", "i", "q"], how="inner")
    return int(joined.loc[joined["t"] < joined["tc"], "c"].nunique())


def _garbage_lines(rng: np.random.Generator, ctx: _Context, n: int) -> list[str]:
    """Lines that do not split into 8 fields: junk, truncated or padded, a mid-field unbalanced quote."""
    out = []
    for j in range(n):
        kind = int(rng.integers(0, 4))
        item = int(rng.integers(0, ctx.cat.code.size))
        code, title = ctx.cat.code[item], ctx.cat.title[item] or "ITEM"
        number = int(rng.integers(FIRST_INVOICE_NUMBER, 10 * FIRST_INVOICE_NUMBER))
        if kind == 0:
            out.append("".join(rng.choice(JUNK_ALPHABET, size=int(rng.integers(8, 40)))) + "~")
        elif kind == 1:
            out.append(f"{number},{code},{title.replace(',', ' ')}")
        elif kind == 2:
            out.append(f"{number},{code},{title.replace(',', ' ')},{int(rng.integers(1, 13))},,,,,,ERR{j}")
        else:
            out.append(f'{number},{code},{title.replace(",", " ")} 12" FRAME,{int(rng.integers(1, 13))}')
    return out


# ----------------------------------------------------------------------------------------------------------
# Entry point.


def write_synthetic_shop(directory: Path, config: SyntheticShopConfig) -> SyntheticShopFiles:
    """Write order_lines.csv.gz, items.csv and stats.json into ``directory`` (created if missing).

    The files are a pure function of ``config``: the same config gives byte-identical files.
    """
    _validate(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(config.seed)
    catalogue_seq, users_seq = root.spawn(2)
    cat = _build_catalogue(config, np.random.default_rng(catalogue_seq))
    ctx = _make_context(config, cat)

    items_path = directory / "items.csv"
    items = pd.DataFrame(
        {
            "item_id": cat.code,
            "title": cat.title,
            "description": cat.description,
            "category": np.array(CATEGORIES, dtype=object)[cat.category_idx],
            "brand": cat.brand,
            "price": [f"{p:.2f}" for p in cat.price],
        }
    )
    items.to_csv(items_path, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)

    order_lines_path = directory / "order_lines.csv.gz"
    n_chunks = -(-config.n_users // config.chunk_users)
    chunk_seqs = users_seq.spawn(n_chunks)
    totals: dict[str, int] = {}
    n_lines = 0
    next_invoice = FIRST_INVOICE_NUMBER
    with (
        open(order_lines_path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=config.gzip_level, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as out,
    ):
        out.write(ORDER_LINES_HEADER + "\n")
        for c in range(n_chunks):
            lo, hi = c * config.chunk_users, min(config.n_users, (c + 1) * config.chunk_users)
            lines, counts, n_invoices = _generate_chunk(
                ctx, np.random.default_rng(chunk_seqs[c]), lo, hi, next_invoice
            )
            if lines:
                out.write("\n".join(lines))
                out.write("\n")
            n_lines += len(lines)
            next_invoice += n_invoices
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + int(value)

    end = np.datetime64(config.end_date, "D")
    stats = {
        "n_order_lines": n_lines,
        "n_items": int(cat.code.size),
        "n_users": config.n_users,
        "n_textless_items": int(cat.textless.sum()),
        "n_categories": config.n_categories,
        "n_invoices": next_invoice - FIRST_INVOICE_NUMBER,
        "first_day": str(end - np.timedelta64(config.n_days - 1, "D")),
        "last_day": config.end_date,
        **{kind: totals.get(kind, 0) for kind in DIRT_KINDS},
        "matched_cancellations": totals.get("matched_cancellations", 0),
        **{k: v for k, v in totals.items() if k not in DIRT_KINDS and k != "matched_cancellations"},
        "config": dataclasses.asdict(config),
    }
    (directory / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=False) + "\n")
    return SyntheticShopFiles(
        directory=directory, order_lines=order_lines_path, items=items_path, stats=stats
    )


def _validate(config: SyntheticShopConfig) -> None:
    problems = []
    if config.n_users < 1 or config.n_items < 1 or config.n_days < 1 or config.chunk_users < 1:
        problems.append("n_users, n_items, n_days and chunk_users must be >= 1")
    if not 1 <= config.n_categories <= len(CATEGORIES):
        problems.append(f"n_categories must be in 1..{len(CATEGORIES)}")
    if config.n_items > 800_000:
        problems.append("n_items must be <= 800000")
    rates = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name.endswith(("_rate", "_prob", "_share"))
    }
    problems += [
        f"{name}={value} is not a fraction in [0, 1]" for name, value in rates.items() if not 0 <= value <= 1
    ]
    if config.repeat_prob + config.complement_prob >= 1:
        problems.append("repeat_prob + complement_prob must be < 1")
    in_place = (
        config.bad_quantity_rate
        + config.bad_price_rate
        + config.description_variant_rate
        + config.bad_timestamp_rate
    )
    if in_place / max(1e-9, 1 - config.missing_user_rate) >= 1:
        problems.append("the in-place dirt rates add up to more than the lines available")
    if config.basket_mean < 1 or config.basket_shape <= 0:
        problems.append("basket_mean must be >= 1 and basket_shape > 0")
    try:
        np.datetime64(config.end_date, "D")
    except ValueError:
        problems.append(f"end_date {config.end_date!r} is not YYYY-MM-DD")
    if problems:
        raise ValueError("Invalid SyntheticShopConfig: " + "; ".join(problems))
