"""One chunk of customers end to end: purchases, dirt, invoice numbers, and the CSV lines in file order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestration.ingest.synthetic.config import FIRST_CUSTOMER_ID
from orchestration.ingest.synthetic.context import Context
from orchestration.ingest.synthetic.dirt import (
    AddedDirt,
    LineDirt,
    draw_added_dirt,
    draw_line_dirt,
    matched_cancellations,
)
from orchestration.ingest.synthetic.fields import format_prices
from orchestration.ingest.synthetic.orders import Purchases, draw_purchases
from orchestration.ingest.synthetic.vocabulary import BAD_TIMESTAMPS


@dataclass(frozen=True)
class Chunk:
    """One chunk's order lines in file order, its counts, and the orders the browsing layer builds sessions on."""

    lines: list[str]
    counts: dict[str, int]
    n_invoices: int
    purchases: Purchases
    guest_order: np.ndarray  # (O,) bool: guest checkout (empty CustomerID)


@dataclass(frozen=True)
class _Invoices:
    """Purchase invoices, then one cancellation invoice per cancellation line."""

    rank: np.ndarray  # chronological rank within the chunk
    number: np.ndarray  # object: InvoiceNo, "C"-prefixed for cancellations
    date: np.ndarray  # object: InvoiceDate
    customer_country: np.ndarray  # object: "CustomerID,Country" (CustomerID empty for guests)


def generate_chunk(
    ctx: Context, rng: np.random.Generator, user_lo: int, user_hi: int, first_invoice: int
) -> Chunk:
    """The order lines of customers user_lo..user_hi-1."""
    purchases = draw_purchases(ctx, rng, user_hi - user_lo)
    dirt = draw_line_dirt(ctx, rng, purchases)
    added = draw_added_dirt(ctx, rng, purchases, dirt)
    invoices = _number_invoices(ctx, purchases, dirt, added, user_lo, first_invoice)
    lines = _lines_in_file_order(ctx, purchases, dirt, added, invoices)
    return Chunk(lines, _counts(purchases, dirt, added), purchases.n_orders + added.cancellations.n, purchases,
                 dirt.order_missing)


def _number_invoices(
    ctx: Context, p: Purchases, dirt: LineDirt, added: AddedDirt, user_lo: int, first_invoice: int
) -> _Invoices:
    """Invoices numbered chronologically within the chunk, from ``first_invoice``."""
    c = added.cancellations
    n_ord, n_c = p.n_orders, c.n
    inv_ts = np.concatenate([p.order_ts, c.ts])
    inv_user = np.concatenate([p.order_user, c.user])
    inv_missing = np.concatenate([dirt.order_missing, np.zeros(n_c, bool)])
    inv_is_c = np.concatenate([np.zeros(n_ord, bool), np.ones(n_c, bool)])
    inv_rank = np.empty(n_ord + n_c, np.int64)
    inv_rank[np.lexsort((np.arange(n_ord + n_c), inv_ts))] = np.arange(n_ord + n_c)
    inv_number = (first_invoice + inv_rank).astype(str).astype(object)
    date_str = np.char.replace(np.datetime_as_string(inv_ts.astype("datetime64[s]")), "T", " ").astype(object)
    customer = (FIRST_CUSTOMER_ID + user_lo + inv_user).astype(str).astype(object)
    return _Invoices(
        rank=inv_rank,
        number=np.where(inv_is_c, "C" + inv_number, inv_number),
        date=date_str,
        customer_country=np.where(inv_missing, "", customer) + "," + ctx.countries[p.country[inv_user]],
    )


def _lines_in_file_order(
    ctx: Context, p: Purchases, dirt: LineDirt, added: AddedDirt, invoices: _Invoices
) -> list[str]:
    """Every line of the chunk, sorted by (invoice rank, position in the invoice)."""
    tables, c, nonp, garbage = ctx.tables, added.cancellations, added.non_products, added.garbage
    dup_src, n_c, n_np, n_garbage = added.dup_src, c.n, len(nonp.order), len(garbage.lines)
    # Positions 4k (purchase), 4k+1 (duplicate), 4k+2 (non-product), 4k+3 (garbage), so duplicates follow
    # their original and postage closes the invoice.
    cols = {
        "inv": [p.line_order, p.line_order[dup_src], p.n_orders + np.arange(n_c), nonp.order, garbage.order],
        "pos": [
            4 * p.line_pos,
            4 * added.dup_after + 1,
            np.zeros(n_c, np.int64),
            4 * p.order_n_lines[nonp.order] + 2,
            4 * garbage.after + 3,
        ],
        "cd": [
            dirt.code_desc_id,
            dirt.code_desc_id[dup_src],
            c.item,
            tables.non_product_id(nonp.code),
            np.zeros(n_garbage, np.int64),
        ],
        "qty": [dirt.qty, dirt.qty[dup_src], c.qty, nonp.qty, np.zeros(n_garbage, np.int64)],
        "price": [
            dirt.price_field,
            dirt.price_field[dup_src],
            tables.price[c.item],
            format_prices(nonp.price),
            np.full(n_garbage, "", object),
        ],
        "date": [dirt.date_code, dirt.date_code[dup_src], np.full(n_c + n_np + n_garbage, -1, np.int64)],
    }
    inv, pos, cd, q, pr, dt = (np.concatenate(v) for v in cols.values())
    order = np.lexsort((pos, invoices.rank[inv]))
    inv, cd, q, pr, dt = inv[order], cd[order], q[order], pr[order], dt[order]
    dates = np.where(dt < 0, invoices.date[inv], np.array(BAD_TIMESTAMPS, dtype=object)[dt])
    fields = (
        invoices.number[inv],
        tables.code_desc[cd],
        q.astype(str).astype(object),
        dates,
        pr,
        invoices.customer_country[inv],
    )
    lines = list(map(",".join, zip(*(f.tolist() for f in fields))))
    # Garbage rows were concatenated last; put their raw text where they sorted to.
    garbage_at = np.flatnonzero(order >= len(order) - n_garbage)
    for at, src in zip(garbage_at.tolist(), (order[garbage_at] - (len(order) - n_garbage)).tolist()):
        lines[at] = garbage.lines[src]
    return lines


def _counts(p: Purchases, dirt: LineDirt, added: AddedDirt) -> dict[str, int]:
    """The chunk's exact dirt counts and sizes (``stats.json`` sums them over chunks)."""
    c = added.cancellations
    return {
        "duplicate_rows": len(added.dup_src),
        "cancellation_lines": c.n,
        "matched_cancellations": matched_cancellations(p, dirt, c),
        "missing_user_lines": int(dirt.line_missing.sum()),
        "non_positive_quantity_lines": len(dirt.bad_qty),
        "non_positive_price_lines": len(dirt.bad_price),
        "non_product_lines": len(added.non_products.order),
        "description_variant_lines": len(dirt.variant),
        "bad_timestamp_lines": len(dirt.bad_ts),
        "garbage_lines": len(added.garbage.lines),
        "purchase_lines": p.n_lines,
        "clean_lines": len(dirt.clean),
        "repeat_draws": p.repeat_draws,  # lines drawn as re-buys (before in-invoice de-duplication)
        "complement_draws": p.complement_draws,  # lines drawn as complements (idem)
        "purchase_invoices": p.n_orders,
        "guest_invoices": int(dirt.order_missing.sum()),
    }
