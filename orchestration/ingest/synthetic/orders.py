"""Customers and their clean purchases: tastes, order times, basket lines, complements, re-buys, quantities.

Each customer has Dirichlet tastes over categories and styles; returning customers re-buy earlier items;
after buying a product type, the next order is more likely to hold one of its complements (mug -> coaster
set) in the same style. Steps draw from the chunk's generator in a fixed order, which the output depends on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestration.ingest.synthetic.context import Context, global_items
from orchestration.ingest.synthetic.sampling import first_index, sample_rows
from orchestration.ingest.synthetic.vocabulary import HOUR_WEIGHTS, QUANTITIES, QUANTITY_WEIGHTS, STYLES


@dataclass(frozen=True)
class Purchases:
    """A chunk's purchase lines before dirt: one line per distinct item per invoice, in invoice order."""

    country: np.ndarray  # (U,) per customer: index into Context.countries
    order_user: np.ndarray  # (O,) customer (0-based within the chunk), ascending
    order_ts: np.ndarray  # (O,) epoch seconds, chronological per customer
    order_n_lines: np.ndarray  # (O,) lines per order
    line_order: np.ndarray  # (L,) order of each line, ascending
    line_user: np.ndarray  # (L,)
    line_pos: np.ndarray  # (L,) position within its order
    line_ts: np.ndarray  # (L,) its order's timestamp
    item: np.ndarray  # (L,) catalogue index
    qty: np.ndarray  # (L,) positive quantities
    repeat_draws: int  # lines drawn as re-buys (before in-invoice de-duplication)
    complement_draws: int  # lines drawn as complements (idem)

    @property
    def n_users(self) -> int:
        return len(self.country)

    @property
    def n_orders(self) -> int:
        return len(self.order_user)

    @property
    def n_lines(self) -> int:
        return len(self.item)


@dataclass(frozen=True)
class _Customers:
    cat_cum: np.ndarray  # (U, n_categories) cumulative category tastes
    style_cum: np.ndarray  # (U, n_styles) cumulative style tastes
    country: np.ndarray  # (U,)
    n_orders: np.ndarray  # (U,)
    window_start: np.ndarray  # (U,) first active day, fractional
    window_len: np.ndarray  # (U,) active days, fractional


@dataclass(frozen=True)
class _Orders:
    user: np.ndarray  # (O,) ascending
    ts: np.ndarray  # (O,) chronological per customer
    user_first_order: np.ndarray  # (U,) index of each customer's first order
    is_first: np.ndarray  # (O,) bool


@dataclass(frozen=True)
class _Lines:
    """Basket draws before de-duplication; ``item`` is filled in step by step."""

    order: np.ndarray  # (L,)
    user: np.ndarray  # (L,)
    item: np.ndarray  # (L,)
    is_repeat: np.ndarray  # (L,) bool
    is_complement: np.ndarray  # (L,) bool


@dataclass(frozen=True)
class _BaseLines:
    """Lines drawn by taste or popularity, the only sources of complements and repeats (so no chains)."""

    idx: np.ndarray  # line indices, ascending
    per_order: np.ndarray  # (O,) base lines per order
    start: np.ndarray  # (O,) position in idx of each order's first base line


def draw_purchases(ctx: Context, rng: np.random.Generator, n_users: int) -> Purchases:
    """A chunk's ``n_users`` customers and their clean purchase lines."""
    customers = _draw_customers(ctx, rng, n_users)
    orders = _draw_orders(ctx, rng, customers)
    lines = _draw_basket_lines(ctx, rng, customers, orders)
    is_base = ~lines.is_repeat & ~lines.is_complement
    base_idx = np.flatnonzero(is_base)
    base_per_order = np.bincount(lines.order[base_idx], minlength=len(orders.user))
    base = _BaseLines(base_idx, base_per_order, np.concatenate([[0], np.cumsum(base_per_order)[:-1]]))
    complement_draws = _draw_complements(ctx, rng, lines, base)
    rep, rep_src = _draw_repeats(rng, lines, base, orders)
    qty = _draw_quantities(ctx, rng, lines.item, rep, rep_src)
    return _one_line_per_item(ctx, customers, orders, lines, qty, len(rep), complement_draws)


def _draw_customers(ctx: Context, rng: np.random.Generator, n_users: int) -> _Customers:
    """Tastes, country, number of orders and active window of each customer."""
    cfg = ctx.config
    cat_cum = np.cumsum(
        rng.dirichlet(np.full(cfg.n_categories, cfg.category_concentration), size=n_users), axis=1
    )
    style_cum = np.cumsum(rng.dirichlet(np.full(len(STYLES), cfg.style_concentration), size=n_users), axis=1)
    country = rng.choice(len(ctx.countries), size=n_users, p=ctx.country_p)
    n_orders = 1 + np.floor(rng.lognormal(cfg.orders_log_mean, cfg.orders_log_sigma, size=n_users)).astype(
        np.int64
    )
    n_orders = np.minimum(n_orders, cfg.max_orders_per_user)
    window_start = rng.random(n_users) * cfg.n_days
    window_len = (cfg.n_days - window_start) * np.sqrt(rng.random(n_users))
    return _Customers(cat_cum, style_cum, country, n_orders, window_start, window_len)


def _draw_orders(ctx: Context, rng: np.random.Generator, customers: _Customers) -> _Orders:
    """Day by intensity (two-try rejection), hour by shop hours; chronological per customer."""
    window_start, window_len = customers.window_start, customers.window_len
    order_user = np.repeat(np.arange(len(customers.n_orders)), customers.n_orders)
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
    user_first_order = first_index(order_user, len(customers.n_orders))
    is_first_order = np.arange(n_ord) == user_first_order[order_user]
    return _Orders(order_user, order_ts, user_first_order, is_first_order)


def _draw_basket_lines(
    ctx: Context, rng: np.random.Generator, customers: _Customers, orders: _Orders
) -> _Lines:
    """Basket sizes, each line's kind (taste / repeat / complement), and a taste-drawn base item per line."""
    cfg, n_styles, n_ord = ctx.config, len(STYLES), len(orders.user)
    r = cfg.basket_shape
    basket = 1 + rng.negative_binomial(r, r / (r + cfg.basket_mean - 1), size=n_ord)
    basket = np.minimum(basket, cfg.max_basket)
    line_order = np.repeat(np.arange(n_ord), basket)
    line_user = orders.user[line_order]
    n_lines = len(line_order)
    u = rng.random(n_lines)
    returning = ~orders.is_first[line_order]
    is_repeat = returning & (u < cfg.repeat_prob)
    is_complement = returning & ~is_repeat & (u < cfg.repeat_prob + cfg.complement_prob)
    category = sample_rows(customers.cat_cum[line_user], rng.random(n_lines))
    style = sample_rows(customers.style_cum[line_user], rng.random(n_lines))
    item = global_items(ctx, rng.random(n_lines))  # explore lines keep this
    u_item = rng.random(n_lines)
    taste = rng.random(n_lines) >= cfg.explore_prob
    group = category * n_styles + style
    by_style = taste & ctx.taste_sampler.has(group)
    item[by_style] = ctx.taste_sampler.sample(group[by_style], u_item[by_style])
    by_category = taste & ~by_style & ctx.category_sampler.has(category)
    item[by_category] = ctx.category_sampler.sample(category[by_category], u_item[by_category])
    return _Lines(line_order, line_user, item, is_repeat, is_complement)


def _draw_complements(ctx: Context, rng: np.random.Generator, lines: _Lines, base: _BaseLines) -> int:
    """Complement lines take a complement type of a base item of the previous order, in its style if any.

    Writes ``lines.item`` in place; returns how many lines were drawn as complements.
    """
    cat, n_styles, item = ctx.cat, len(STYLES), lines.item
    comp = np.flatnonzero(lines.is_complement)
    prev = lines.order[comp] - 1
    ok = base.per_order[prev] > 0
    comp, prev = comp[ok], prev[ok]
    src = base.idx[base.start[prev] + (rng.random(len(comp)) * base.per_order[prev]).astype(np.int64)]
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
    return int(same_style.sum() + any_style.sum())


def _draw_repeats(
    rng: np.random.Generator, lines: _Lines, base: _BaseLines, orders: _Orders
) -> tuple[np.ndarray, np.ndarray]:
    """Repeat lines re-buy a base item of one of the customer's earlier orders (``lines.item`` in place).

    Returns the repeat lines that found an earlier order, and the line each re-buys.
    """
    rep = np.flatnonzero(lines.is_repeat)
    lo = base.start[orders.user_first_order[lines.user[rep]]]
    hi = base.start[lines.order[rep]]
    ok = hi > lo
    rep, lo, hi = rep[ok], lo[ok], hi[ok]
    rep_src = base.idx[lo + (rng.random(len(rep)) * (hi - lo)).astype(np.int64)]
    lines.item[rep] = lines.item[rep_src]
    return rep, rep_src


def _draw_quantities(
    ctx: Context, rng: np.random.Generator, item: np.ndarray, rep: np.ndarray, rep_src: np.ndarray
) -> np.ndarray:
    """Cheap items in bigger packs; half of the repeats re-buy the same quantity."""
    q_idx = rng.choice(len(QUANTITIES), size=len(item), p=QUANTITY_WEIGHTS / QUANTITY_WEIGHTS.sum())
    price = ctx.cat.price[item]
    q_idx = np.clip(q_idx + 2 * (price < 1.0) - 2 * (price > 8.0), 0, len(QUANTITIES) - 1)
    qty = QUANTITIES[q_idx]
    same_qty = rng.random(len(rep)) < 0.5
    qty[rep[same_qty]] = qty[rep_src[same_qty]]
    return qty


def _one_line_per_item(
    ctx: Context,
    customers: _Customers,
    orders: _Orders,
    lines: _Lines,
    qty: np.ndarray,
    repeat_draws: int,
    complement_draws: int,
) -> Purchases:
    """Keep the first line of each distinct item per invoice, preserving line order."""
    n_ord = len(orders.user)
    keep = np.sort(np.unique(lines.order * ctx.cat.code.size + lines.item, return_index=True)[1])
    line_order, line_user, item, qty = lines.order[keep], lines.user[keep], lines.item[keep], qty[keep]
    order_line_start = first_index(line_order, n_ord)
    return Purchases(
        country=customers.country,
        order_user=orders.user,
        order_ts=orders.ts,
        order_n_lines=np.bincount(line_order, minlength=n_ord),
        line_order=line_order,
        line_user=line_user,
        line_pos=np.arange(len(item)) - order_line_start[line_order],
        line_ts=orders.ts[line_order],
        item=item,
        qty=qty,
        repeat_draws=repeat_draws,
        complement_draws=complement_draws,
    )
