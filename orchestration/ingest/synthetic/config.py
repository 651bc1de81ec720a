"""The shop's settings (``SyntheticShopConfig``), what writing it returns, and the file layout constants."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestration.ingest.synthetic.vocabulary import CATEGORIES

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

    # Browsing (interactions.csv.gz, the generic events layout): views and carts before orders, abandoned carts,
    # visitors who never sign in. Off: the shop is order lines only (order_lines.csv.gz is the same either way).
    browsing: bool = True
    view_before_purchase_prob: float = 0.8  # share of bought lines whose item was viewed earlier in the session
    cart_before_purchase_prob: float = 0.6  # share of bought lines carted earlier in the session
    extra_views_per_order: float = 12.0  # mean views (Poisson) of other items in an order's session
    abandoned_cart_prob: float = 0.08  # share of views of items not bought that are carted and left
    anonymous_sessions_per_user: float = 0.5  # mean sessions without an account, per customer
    anonymous_session_views: float = 4.0  # mean views per anonymous session (at least 1)

    # Mechanics.
    chunk_users: int = 5_000  # customers generated per chunk (bounds memory; part of the seed derivation)
    gzip_level: int = 1  # 1 = fastest


@dataclass(frozen=True)
class SyntheticShopFiles:
    """Where a written shop lies, and its stats."""

    directory: Path
    order_lines: Path  # directory / "order_lines.csv.gz"
    items: Path  # directory / "items.csv"
    stats: dict  # sizes and exact dirt counts (also directory / "stats.json")
    interactions: Path | None = None  # directory / "interactions.csv.gz": browsing events; None without browsing


def validate(config: SyntheticShopConfig) -> None:
    """Raise ValueError naming every setting that cannot make a shop."""
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
    if config.extra_views_per_order < 0 or config.anonymous_sessions_per_user < 0:
        problems.append("extra_views_per_order and anonymous_sessions_per_user must be >= 0")
    if config.anonymous_session_views < 1:
        problems.append("anonymous_session_views must be >= 1")
    if config.basket_mean < 1 or config.basket_shape <= 0:
        problems.append("basket_mean must be >= 1 and basket_shape > 0")
    try:
        np.datetime64(config.end_date, "D")
    except ValueError:
        problems.append(f"end_date {config.end_date!r} is not YYYY-MM-DD")
    if problems:
        raise ValueError("Invalid SyntheticShopConfig: " + "; ".join(problems))
