"""A seeded synthetic gift shop: the zero-config default data source.

``write_synthetic_shop`` writes files that look like a real shop's exports:

* ``order_lines.csv.gz`` in the UCI Online Retail layout (``InvoiceNo,StockCode,Description,Quantity,
  InvoiceDate,UnitPrice,CustomerID,Country``), dirt included,
* ``items.csv``, a generic catalogue (``item_id,title,description,category,brand,price``), and
* with ``browsing`` (the default), ``interactions.csv.gz``, generic events (``user_id,item_id,timestamp,
  event_type,quantity,session_id``): views and carts before each order, abandoned carts, anonymous sessions
  (module ``browsing``),

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

Modules, in the order a shop is made: ``config`` (settings, validation, layout constants), ``vocabulary``
(word lists and weights), ``catalogue``, ``sampling`` and ``fields`` (samplers, CSV text tables), ``context``
(what every chunk shares), ``orders`` (customers and clean purchases), ``dirt``, ``chunk`` (one chunk's lines
in file order), ``browsing`` (a chunk's sessions) and ``writer`` (the files).
"""

from orchestration.ingest.synthetic.config import (
    DIRT_KINDS,
    FIRST_CUSTOMER_ID,
    FIRST_INVOICE_NUMBER,
    ITEMS_COLUMNS,
    ORDER_LINES_HEADER,
    SyntheticShopConfig,
    SyntheticShopFiles,
)
from orchestration.ingest.synthetic.vocabulary import CATEGORIES, NON_PRODUCT_CODES, PRODUCT_TYPES
from orchestration.ingest.synthetic.writer import write_synthetic_shop

__all__ = [
    "CATEGORIES",
    "DIRT_KINDS",
    "FIRST_CUSTOMER_ID",
    "FIRST_INVOICE_NUMBER",
    "ITEMS_COLUMNS",
    "NON_PRODUCT_CODES",
    "ORDER_LINES_HEADER",
    "PRODUCT_TYPES",
    "SyntheticShopConfig",
    "SyntheticShopFiles",
    "write_synthetic_shop",
]
