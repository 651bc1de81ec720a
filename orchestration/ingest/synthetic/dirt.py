"""The dirt real exports have, one kind per line so that every count in ``stats.json`` is exact.

In place (a purchase line changed): guest invoices, bad quantities and prices, description variants, bad
timestamps. Added (new lines): duplicates, cancellations, non-product lines, garbage. Draws come from the
chunk's generator in a fixed order, which the output depends on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestration.ingest.synthetic.config import FIRST_INVOICE_NUMBER, SyntheticShopConfig
from orchestration.ingest.synthetic.context import Context, global_items
from orchestration.ingest.synthetic.fields import VARIANT_KINDS, format_prices
from orchestration.ingest.synthetic.orders import Purchases
from orchestration.ingest.synthetic.sampling import first_index
from orchestration.ingest.synthetic.vocabulary import BAD_TIMESTAMPS, JUNK_ALPHABET, NON_PRODUCT_CODES

NO_DIRT = 4  # LineDirt.kind of a line with no in-place dirt besides (maybe) a missing customer
BAD_TIMESTAMP = 3  # LineDirt.kind of a line with an unparseable InvoiceDate


@dataclass(frozen=True)
class LineDirt:
    """In-place dirt of a chunk's purchase lines, and the output fields it changes."""

    order_missing: np.ndarray  # (O,) bool: guest invoice, empty CustomerID
    line_missing: np.ndarray  # (L,) bool
    kind: np.ndarray  # (L,) 0 quantity, 1 price, 2 description variant, 3 timestamp, NO_DIRT
    bad_qty: np.ndarray  # line indices of each kind
    bad_price: np.ndarray
    variant: np.ndarray
    bad_ts: np.ndarray
    clean: np.ndarray  # line indices with no dirt and a customer
    code_desc_id: np.ndarray  # (L,) index into Tables.code_desc
    qty: np.ndarray  # (L,) quantities, bad ones included
    price_field: np.ndarray  # (L,) object: UnitPrice text
    date_code: np.ndarray  # (L,) -1: the invoice's timestamp; otherwise an index into BAD_TIMESTAMPS


@dataclass(frozen=True)
class Cancellations:
    """C-invoice lines, one invoice each: exact reversals, then partial ones, then unmatched ones."""

    user: np.ndarray
    item: np.ndarray
    qty: np.ndarray  # negative
    ts: np.ndarray

    @property
    def n(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class NonProducts:
    """POST / DOT / M / BANK CHARGES / AMAZONFEE lines closing some customers' invoices."""

    order: np.ndarray  # sorted
    code: np.ndarray  # index into NON_PRODUCT_CODES
    qty: np.ndarray
    price: np.ndarray  # float


@dataclass(frozen=True)
class Garbage:
    """Physical lines that do not split into the 8 fields, each after line ``after`` of order ``order``."""

    order: np.ndarray
    after: np.ndarray
    lines: list[str]


@dataclass(frozen=True)
class AddedDirt:
    """The lines a chunk adds to its purchases."""

    dup_src: np.ndarray  # sorted purchase lines that are copied
    dup_after: np.ndarray  # position in the invoice after which each copy follows
    cancellations: Cancellations
    non_products: NonProducts
    garbage: Garbage


def draw_line_dirt(ctx: Context, rng: np.random.Generator, p: Purchases) -> LineDirt:
    """Whole guest invoices, then at most one other kind per line, and the fields those kinds change."""
    cat, tables = ctx.cat, ctx.tables
    order_missing, line_missing, kind = _line_dirt_kinds(ctx, rng, p)
    bad_qty, bad_price, variant, bad_ts = (np.flatnonzero(kind == j) for j in range(4))
    clean = np.flatnonzero((kind == NO_DIRT) & ~line_missing)
    item = p.item
    code_desc_id = item.copy()
    code_desc_id[variant] = tables.variant_id(item[variant], rng.integers(0, VARIANT_KINDS, len(variant)))
    qty = p.qty.copy()
    qty[bad_qty] = np.where(rng.random(len(bad_qty)) < 0.3, 0, -rng.integers(1, 13, len(bad_qty)))
    price_field = tables.price[item]
    zero = rng.random(len(bad_price)) < 0.8
    price_field[bad_price] = np.where(zero, "0.00", format_prices(-cat.price[item[bad_price]]))
    date_code = np.full(p.n_lines, -1, np.int64)
    date_code[bad_ts] = rng.integers(0, len(BAD_TIMESTAMPS), len(bad_ts))
    return LineDirt(
        order_missing=order_missing,
        line_missing=line_missing,
        kind=kind,
        bad_qty=bad_qty,
        bad_price=bad_price,
        variant=variant,
        bad_ts=bad_ts,
        clean=clean,
        code_desc_id=code_desc_id,
        qty=qty,
        price_field=price_field,
        date_code=date_code,
    )


def _line_dirt_kinds(
    ctx: Context, rng: np.random.Generator, p: Purchases
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(guest orders, guest lines, per-line dirt kind); guest lines get no other kind."""
    cfg, cat, item = ctx.config, ctx.cat, p.item
    order_missing = rng.random(p.n_orders) < cfg.missing_user_rate
    line_missing = order_missing[p.line_order]
    scale = 1.0 / max(1e-9, 1.0 - cfg.missing_user_rate)
    rates = np.array(
        [cfg.bad_quantity_rate, cfg.bad_price_rate, cfg.description_variant_rate, cfg.bad_timestamp_rate]
    )
    kind = np.searchsorted(np.cumsum(rates * scale), rng.random(p.n_lines), side="right")
    kind[line_missing] = NO_DIRT
    variant = np.flatnonzero(kind == 2)
    kind[variant] = NO_DIRT
    variant = variant[~cat.textless[item[variant]]]
    # Cap variants per item in this chunk so that the canonical description stays the strict majority.
    item_lines = np.bincount(item, minlength=cat.code.size)
    by_item = variant[np.argsort(item[variant], kind="stable")]
    rank = np.arange(len(by_item)) - first_index(item[by_item], cat.code.size)[item[by_item]]
    kind[by_item[rank < (item_lines[item[by_item]] - 1) // 2]] = 2
    return order_missing, line_missing, kind


def draw_added_dirt(ctx: Context, rng: np.random.Generator, p: Purchases, dirt: LineDirt) -> AddedDirt:
    """Duplicates, cancellations, non-product lines and garbage, drawn in that order."""
    cfg = ctx.config
    n_dup = min(rng.binomial(p.n_lines, cfg.duplicate_rate), len(dirt.clean))
    dup_src = np.sort(rng.choice(dirt.clean, size=n_dup, replace=False))
    dup_after = p.line_pos[dup_src] + (
        rng.random(n_dup) * (p.order_n_lines[p.line_order[dup_src]] - p.line_pos[dup_src])
    ).astype(np.int64)
    cancellations = _draw_cancellations(ctx, rng, p, dirt)
    non_products = _draw_non_products(cfg, rng, p.n_lines, dirt.order_missing)
    garbage = _draw_garbage(ctx, rng, p)
    return AddedDirt(dup_src, dup_after, cancellations, non_products, garbage)


def _draw_cancellations(
    ctx: Context, rng: np.random.Generator, p: Purchases, dirt: LineDirt
) -> Cancellations:
    """Most reverse an earlier clean purchase exactly; a few are partial (smaller quantity) or unmatched."""
    cfg, qty = ctx.config, dirt.qty
    cancellable = dirt.clean[p.line_ts[dirt.clean] < ctx.end_epoch - 3600]
    n_cancel = min(rng.binomial(p.n_lines, cfg.cancellation_rate), len(cancellable))
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
    c_qty = np.concatenate(
        [-qty[exact_src], -(1 + (rng.random(n_partial) * (qty[partial_src] - 1)).astype(np.int64))]
    )
    c_ts = p.line_ts[c_src] + _cancellation_delay(ctx, rng, p.line_ts[c_src])
    c_user = np.concatenate([p.line_user[c_src], rng.integers(0, p.n_users, n_unmatched)])
    c_item = np.concatenate([p.item[c_src], global_items(ctx, rng.random(n_unmatched))])
    c_qty = np.concatenate([c_qty, -rng.integers(1, 7, n_unmatched)])
    c_ts = np.concatenate([c_ts, rng.integers(ctx.start_epoch, ctx.end_epoch + 1, n_unmatched)])
    return Cancellations(c_user, c_item, c_qty, c_ts)


def _cancellation_delay(ctx: Context, rng: np.random.Generator, purchase_ts: np.ndarray) -> np.ndarray:
    """Seconds from purchase to cancellation: an hour to a few days; near the end, uniform in what is left."""
    delay = 3600 + rng.exponential(2 * 86400, len(purchase_ts)).astype(np.int64)
    room = ctx.end_epoch - purchase_ts
    late = delay > room
    delay[late] = 3600 + (rng.random(int(late.sum())) * (room[late] - 3600)).astype(np.int64)
    return delay


def _draw_non_products(
    cfg: SyntheticShopConfig, rng: np.random.Generator, n_lines: int, order_missing: np.ndarray
) -> NonProducts:
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
    return NonProducts(np_order, np_code, np_qty, np.maximum(np_price, 0.01))


def _draw_garbage(ctx: Context, rng: np.random.Generator, p: Purchases) -> Garbage:
    n_garbage = rng.binomial(p.n_lines, ctx.config.garbage_rate)
    g_order = rng.integers(0, p.n_orders, n_garbage)
    g_after = (rng.random(n_garbage) * (p.order_n_lines[g_order] + 1)).astype(np.int64)
    return Garbage(g_order, g_after, _garbage_lines(rng, ctx, n_garbage))


def _garbage_lines(rng: np.random.Generator, ctx: Context, n: int) -> list[str]:
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


def matched_cancellations(p: Purchases, dirt: LineDirt, cancellations: Cancellations) -> int:
    """Cancellation lines with an earlier purchase (customer, parseable time) of the same user/item/-qty."""
    excluded = dirt.line_missing | (dirt.kind == BAD_TIMESTAMP)
    keep = ~excluded & (dirt.qty > 0)
    purchases = pd.DataFrame(
        {"u": p.line_user[keep], "i": p.item[keep], "q": dirt.qty[keep], "t": p.line_ts[keep]}
    )
    purchases = purchases.groupby(["u", "i", "q"], as_index=False)["t"].min()
    c = cancellations
    cancels = pd.DataFrame({"u": c.user, "i": c.item, "q": -c.qty, "tc": c.ts, "c": np.arange(c.n)})
    joined = cancels.merge(purchases, on=["u", "i", "q"], how="inner")
    return int(joined.loc[joined["t"] < joined["tc"], "c"].nunique())
