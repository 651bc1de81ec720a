"""The shop's browsing layer: views and carts around the orders, and visitors who never sign in.

Written as a generic interactions file (``INTERACTIONS_HEADER``), the layout the loader reads for any shop:

* before each customer's order (not guest checkouts), a session of ``SESSION_MINUTES`` leading up to it: most of the
  bought items viewed (some twice), many carted, and ``extra_views_per_order`` views of other items, mostly of the
  bought items' categories; a few of those are carted and never bought (abandoned carts). Every view and cart of a
  session is stamped before its order, so the purchase a view leads to always comes after it;
* anonymous sessions (a session id, no user id), ``anonymous_sessions_per_user`` per customer on average, of views
  by global popularity and the odd abandoned cart, spread over the history.

A chunk's events come from their own generator (not the one that draws its orders), so switching browsing on or
off leaves ``order_lines.csv.gz`` byte for byte the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestration.ingest.synthetic.config import FIRST_CUSTOMER_ID
from orchestration.ingest.synthetic.context import Context, global_items
from orchestration.ingest.synthetic.orders import Purchases

INTERACTIONS_HEADER = "user_id,item_id,timestamp,event_type,quantity,session_id"
SESSION_MINUTES = (5, 60)  # a purchase session starts this many minutes (uniform) before its order
SAME_CATEGORY_SHARE = 0.7  # extra views of a bought item's category; the rest by global popularity


@dataclass(frozen=True)
class _Events:
    user: np.ndarray  # object: customer id text, "" for anonymous visitors
    item: np.ndarray  # catalogue index
    ts: np.ndarray  # epoch seconds
    kind: np.ndarray  # object: "view" or "cart"
    qty: np.ndarray  # int
    session: np.ndarray  # int: session number, written "s<number>"


def browsing_lines(
    ctx: Context,
    rng: np.random.Generator,
    p: Purchases,
    guest_order: np.ndarray,
    user_lo: int,
    first_session: int,
) -> tuple[list[str], dict[str, int], int]:
    """(CSV lines sorted by time, counts, sessions used) for one chunk whose orders are ``p``; ``guest_order``
    marks the guest checkouts, which get no session (their buyer is unknown)."""
    cfg = ctx.config
    signed = np.flatnonzero(~guest_order)
    n_sessions = len(signed)
    session_of_order = np.full(p.n_orders, -1, np.int64)
    session_of_order[signed] = np.arange(n_sessions)
    session_start = p.order_ts - rng.integers(SESSION_MINUTES[0] * 60, SESSION_MINUTES[1] * 60 + 1, p.n_orders)
    customer = (FIRST_CUSTOMER_ID + user_lo + p.order_user).astype(str).astype(object)

    # Views of the bought items, 1 + Poisson(0.5) each, at random times of the session before the order.
    line_session = session_of_order[p.line_order]
    viewed = np.flatnonzero((line_session >= 0) & (rng.random(p.n_lines) < cfg.view_before_purchase_prob))
    n_views = 1 + rng.poisson(0.5, len(viewed))
    bought_view_line = np.repeat(viewed, n_views)
    bought_view_ts = _before(rng, session_start[p.line_order[bought_view_line]], p.line_ts[bought_view_line])
    # Carts of bought items: after the line's first view (or the session start), before the order.
    carted = np.flatnonzero((line_session >= 0) & (rng.random(p.n_lines) < cfg.cart_before_purchase_prob))
    never = np.iinfo(np.int64).max
    first_view = np.full(p.n_lines, never, np.int64)
    np.minimum.at(first_view, bought_view_line, bought_view_ts)
    cart_from = np.where(first_view[carted] < never, first_view[carted], session_start[p.line_order[carted]])
    cart_ts = _before(rng, cart_from, p.line_ts[carted])

    # Other items seen in the session: Poisson(extra_views_per_order) per order, near a random bought item.
    n_extra = rng.poisson(cfg.extra_views_per_order, n_sessions)
    extra_order = np.repeat(signed, n_extra)
    anchor_line = _random_line_of(rng, p, extra_order)
    same = rng.random(len(extra_order)) < SAME_CATEGORY_SHARE
    category = ctx.cat.category_idx[p.item[anchor_line]]
    same &= ctx.category_sampler.has(category)
    extra_item = global_items(ctx, rng.random(len(extra_order)))
    extra_item[same] = ctx.category_sampler.sample(category[same], rng.random(int(same.sum())))
    extra_ts = _before(rng, session_start[extra_order], p.order_ts[extra_order])
    # Some of them carted a little later in the session, and never bought: abandoned carts.
    abandoned = np.flatnonzero(rng.random(len(extra_order)) < cfg.abandoned_cart_prob)
    abandoned_ts = _before(rng, extra_ts[abandoned], p.order_ts[extra_order[abandoned]])

    anonymous = _anonymous_sessions(ctx, rng, p.n_users)
    session_no = first_session + session_of_order  # per order; guest checkouts' are never read
    order_of = {
        "bought_view": p.line_order[bought_view_line],
        "cart": p.line_order[carted],
        "extra": extra_order,
        "abandoned": extra_order[abandoned],
    }
    events = _Events(
        user=np.concatenate([customer[o] for o in order_of.values()] + [anonymous.user]),
        item=np.concatenate([p.item[bought_view_line], p.item[carted], extra_item, extra_item[abandoned],
                             anonymous.item]),
        ts=np.concatenate([bought_view_ts, cart_ts, extra_ts, abandoned_ts, anonymous.ts]),
        kind=np.concatenate([
            np.full(len(bought_view_line), "view", object), np.full(len(carted), "cart", object),
            np.full(len(extra_order), "view", object), np.full(len(abandoned), "cart", object), anonymous.kind,
        ]),
        qty=np.concatenate([np.ones(len(bought_view_line), np.int64), p.qty[carted],
                            np.ones(len(extra_order) + len(abandoned), np.int64), anonymous.qty]),
        session=np.concatenate([session_no[o] for o in order_of.values()]
                               + [first_session + n_sessions + anonymous.session]),
    )
    counts = {
        "view_events": int(np.sum(events.kind == "view")),
        "cart_events": int(np.sum(events.kind == "cart")),
        "bought_item_views": len(bought_view_line),
        "abandoned_cart_events": len(abandoned) + int(np.sum(anonymous.kind == "cart")),
        "browsing_sessions": n_sessions,
        "anonymous_sessions": anonymous.n_sessions,
        "anonymous_events": len(anonymous.item),
    }
    return _lines(ctx, events), counts, n_sessions + anonymous.n_sessions


def _before(rng: np.random.Generator, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A whole second in [start, end - 1] (start itself when the span is empty)."""
    span = np.maximum(end - start, 1)
    return start + np.floor(rng.random(len(start)) * span).astype(np.int64)


def _random_line_of(rng: np.random.Generator, p: Purchases, order: np.ndarray) -> np.ndarray:
    """One line of each given order, uniformly (lines of an order are contiguous, orders ascending)."""
    first_line = np.searchsorted(p.line_order, np.arange(p.n_orders), side="left")
    return first_line[order] + np.floor(rng.random(len(order)) * p.order_n_lines[order]).astype(np.int64)


@dataclass(frozen=True)
class _Anonymous:
    n_sessions: int
    session: np.ndarray  # int: 0-based within the chunk
    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    kind: np.ndarray
    qty: np.ndarray


def _anonymous_sessions(ctx: Context, rng: np.random.Generator, n_users: int) -> _Anonymous:
    """Visitors who never sign in: 1 + Poisson(anonymous_session_views - 1) views by popularity within 30 minutes
    of a random start; each viewed item is carted (and left) with probability abandoned_cart_prob."""
    cfg = ctx.config
    n = int(rng.poisson(cfg.anonymous_sessions_per_user * n_users))
    start = rng.integers(ctx.start_epoch, ctx.end_epoch - 1800, n) if n else np.zeros(0, np.int64)
    n_views = 1 + rng.poisson(max(cfg.anonymous_session_views - 1, 0), n)
    view_session = np.repeat(np.arange(n), n_views)
    view_item = global_items(ctx, rng.random(len(view_session)))
    view_ts = start[view_session] + rng.integers(0, 1800, len(view_session))
    carts = np.flatnonzero(rng.random(len(view_session)) < cfg.abandoned_cart_prob)
    cart_ts = np.minimum(view_ts[carts] + rng.integers(1, 600, len(carts)), ctx.end_epoch)
    session = np.concatenate([view_session, view_session[carts]])
    return _Anonymous(
        n_sessions=n,
        session=session,
        user=np.full(len(session), "", object),
        item=np.concatenate([view_item, view_item[carts]]),
        ts=np.concatenate([view_ts, cart_ts]),
        kind=np.concatenate([np.full(len(view_session), "view", object), np.full(len(carts), "cart", object)]),
        qty=np.ones(len(session), np.int64),
    )


def _lines(ctx: Context, e: _Events) -> list[str]:
    """CSV lines in time order (ties: session, then the order they were drawn in)."""
    order = np.lexsort((np.arange(len(e.ts)), e.session, e.ts))
    stamp = np.char.replace(np.datetime_as_string(e.ts[order].astype("datetime64[s]")), "T", " ").astype(object)
    fields = (e.user[order], ctx.cat.code[e.item[order]], stamp, e.kind[order],
              e.qty[order].astype(str).astype(object), "s" + e.session[order].astype(str).astype(object))
    return list(map(",".join, zip(*(f.tolist() for f in fields))))
