"""Output text shared by all chunks: CSV quoting, description variants, and the per-item string tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestration.ingest.synthetic.catalogue import Catalogue
from orchestration.ingest.synthetic.vocabulary import NON_PRODUCT_CODES

VARIANT_KINDS = 4  # trailing spaces, lower case, title case, double space


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
class Tables:
    """Per-item and per-code strings shared by all chunks."""

    # object: "code,description" for the items (canonical, then each variant kind), then the non-products
    code_desc: np.ndarray
    price: np.ndarray  # object: formatted catalogue price per item
    n_items: int

    def variant_id(self, item: np.ndarray, kind: np.ndarray) -> np.ndarray:
        return (kind + 1) * self.n_items + item

    def non_product_id(self, k: np.ndarray) -> np.ndarray:
        return (VARIANT_KINDS + 1) * self.n_items + k


def build_tables(cat: Catalogue) -> Tables:
    """Every item's "code,description" strings (canonical, then each variant kind) and formatted price."""
    n = len(cat.code)
    code_desc = [f"{c},{_csv_field(t)}" for c, t in zip(cat.code, cat.title)]
    per_title = [_variants(t) if t else [t] * VARIANT_KINDS for t in cat.title]
    for k in range(VARIANT_KINDS):
        code_desc += [f"{c},{_csv_field(v[k])}" for c, v in zip(cat.code, per_title)]
    code_desc += [f"{c},{d}" for c, d in NON_PRODUCT_CODES.items()]
    return Tables(np.array(code_desc, dtype=object), format_prices(cat.price), n)


def format_prices(values: np.ndarray) -> np.ndarray:
    """Prices as 2-decimal text, the way the export writes them."""
    return np.array([f"{v:.2f}" for v in values], dtype=object)
