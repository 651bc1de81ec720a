"""Point-in-time candidate features: every FEATURE_DESCRIPTIONS column from events before the cut-off only.

``features_as_of`` records the newest event each row's features read, which ``future_event_rows`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recmodels.ranking.behaviour import BEHAVIOUR_FEATURES, add_behaviour_features
from recmodels.ranking.lookups import NEVER_DAYS, TimeLike, internal_item_ids, lookup, pair_lookup, to_days
from recmodels.ranking.reorder import pair_orders, quantity_features, repeat_features
from recmodels.similarity import unit_rows

DEFAULT_RECENT_ITEMS = 10  # distinct recent history items behind the text_cosine feature
# Rows with their own cut-offs are featurised in at most this many groups, each as of its earliest cut-off: more
# groups, fresher features, one more pass over the events each.
CUTOFF_GROUPS = 24

FEATURE_DESCRIPTIONS: dict[str, str] = {
    "item_purchases": "events (purchase lines) of the item before the cut-off, all users",
    "item_purchases_7d": "events of the item in the 7 days before the cut-off",
    "item_purchases_30d": "events of the item in the 30 days before the cut-off",
    "item_trend": "(7-day events / 7) / (30-day events / 30); 0 when the item has no event in 30 days",
    "item_price": "median unit_price of the item before the cut-off; NaN when it has no event",
    "item_price_vs_user": "item_price / the user's median paid unit_price; 1 for a user without events, "
    "NaN when the item has no price",
    "item_age_days": "days from the item's first event to the cut-off; 0 for an item never sold",
    "user_orders": "the user's orders (distinct basket_id, or distinct days without basket_id)",
    "user_events": "the user's events",
    "user_days_since_last": f"days from the user's last event to the cut-off; {NEVER_DAYS:g} without events",
    "user_days_between_orders": "mean days between the user's consecutive orders (order time = its first "
    f"event); {NEVER_DAYS:g} with fewer than 2 orders",
    "user_monetary": "sum of quantity * unit_price over the user's events",
    "user_item_purchases": "the user's events of this item",
    "user_item_days_since": f"days from the user's last event of this item to the cut-off; {NEVER_DAYS:g} "
    "if never",
    "user_item_orders": "the user's distinct orders holding this item",
    "user_item_purchases_90d": "the user's events of this item in the 90 days before the cut-off",
    "user_item_interval_days": "mean days between the user's consecutive orders of this item; "
    f"{NEVER_DAYS:g} with fewer than 2 such orders",
    "user_item_due": "user_item_days_since / user_item_interval_days: about 1 when the next re-order is due; "
    "0 with fewer than 2 orders of the item",
    "item_repeat_rate": "share of the item's buyers who ordered it in 2 or more distinct orders; 0 for an item "
    "never sold",
    "user_repeat_share": "share of the user's orders (after the first) that re-order an item of an earlier order; 0 "
    "with fewer than 2 orders",
    "item_median_quantity": "median units per event of the item, all users; 0 for an item never sold",
    "user_mean_quantity": "mean units per event of the user; 0 without events",
    "user_item_quantity": "units of the item the user bought",
    "user_item_mean_quantity": "mean units per event of the user's events of the item; 0 if never",
    "user_item_last_quantity": "units of the item in the user's latest order holding it; 0 if never",
    "user_item_quantity_ratio": "user_item_mean_quantity / item_median_quantity: above 1 for a user who buys the "
    "item in bulk; 0 if never bought or without a positive median",
    "user_item_spend_share": "share of the user's spend (user_monetary) that went on the item; 0 without spend",
    "days_of_stock_left": "user_item_last_quantity / the user's units of the item per day (units of the orders "
    "before the latest over the days from the first to the latest), minus the days since the latest: negative "
    f"when the stock should have run out; {NEVER_DAYS:g} with fewer than 2 orders of the item",
    "text_cosine": "cosine between the item's text vector and the mean unit text vector of the user's "
    "`recent_items` most recent distinct items; 0 when either has no text (only with item_text)",
    "category_affinity": "share of the user's events in the item's category; 0 without events or category "
    "(only with item_attributes.category)",
    "brand_affinity": "share of the user's events of the item's brand; 0 without events or brand "
    "(only with item_attributes.brand)",
}

FEATURE_DESCRIPTIONS |= BEHAVIOUR_FEATURES  # only with behaviour events (compute_features' ``behaviour``)

_EVENT_COLUMNS = ("user_key", "item", "occurred_at", "quantity", "unit_price")


def feature_columns(features: pd.DataFrame) -> list[str]:
    """The FEATURE_DESCRIPTIONS columns present in ``features``, in their stable order."""
    return [name for name in FEATURE_DESCRIPTIONS if name in features.columns]


def price_vs_user(item_price: np.ndarray, user_price: np.ndarray) -> np.ndarray:
    """``item_price_vs_user`` per row: the item's price over its user's median paid unit price.

    A user without a (positive) median price gives no reference point, so the ratio is neutral, 1; it is NaN
    where the item has no price.
    """
    item_price = np.asarray(item_price, np.float64)
    user_price = np.asarray(user_price, np.float64)
    ratio = np.ones(len(item_price))
    has_reference = user_price > 0  # False for NaN
    ratio[has_reference] = item_price[has_reference] / user_price[has_reference]
    ratio[np.isnan(item_price)] = np.nan
    return ratio


def _text_cosine(
    user: np.ndarray,
    item: np.ndarray,
    times: np.ndarray,
    n_users: int,
    row_user: np.ndarray,
    row_item: np.ndarray,
    item_text: np.ndarray,
    recent_items: int,
) -> np.ndarray:
    """Cosine between each candidate's text and its user's recent-items profile (see FEATURE_DESCRIPTIONS)."""
    unit = unit_rows(item_text)  # unit rows so that long descriptions do not outweigh short ones
    if len(user):
        recent = pd.DataFrame({"user": user, "item": item, "time": times})
        # Distinct items by their last event; equal times order by id, only to be deterministic.
        recent = recent.sort_values(["user", "time", "item"], kind="stable")
        recent = recent.drop_duplicates(["user", "item"], keep="last").groupby("user").tail(recent_items)
        profile = np.zeros((n_users, unit.shape[1]), dtype=np.float64)
        # Items without text add a zero vector, which changes the mean's length but not its direction.
        np.add.at(profile, recent["user"].to_numpy(), unit[recent["item"].to_numpy()])
        profile = unit_rows(profile)
    else:
        profile = np.zeros((0, unit.shape[1]), dtype=np.float32)
    cosine = np.zeros(len(row_user), dtype=np.float64)
    known = np.flatnonzero(row_user >= 0)
    chunk = 16_384  # gathers chunk x d floats at a time instead of all rows x d
    for start in range(0, len(known), chunk):
        index = known[start : start + chunk]
        cosine[index] = np.einsum("ij,ij->i", profile[row_user[index]], unit[row_item[index]])
    return cosine


def _affinity(
    attribute: pd.Series,
    n_items: int,
    user: np.ndarray,
    item: np.ndarray,
    user_events: np.ndarray,
    row_user: np.ndarray,
    row_item: np.ndarray,
) -> np.ndarray:
    """Share of each row's user's events whose item has the candidate item's attribute value."""
    values = attribute.reindex(np.arange(n_items + 1))
    codes, _ = pd.factorize(values, use_na_sentinel=True)  # -1 = no value, which matches nothing
    event_codes = codes[item]
    has_value = event_codes >= 0
    pairs = pd.DataFrame({"user": user[has_value], "code": event_codes[has_value]}).value_counts()
    pair_user = pairs.index.get_level_values("user").to_numpy()
    pair_code = pairs.index.get_level_values("code").to_numpy()
    counts = pair_lookup(pair_user, pair_code, pairs.to_numpy(np.float64), row_user, codes[row_item], 0.0)
    denominator = lookup(user_events, row_user, 1.0)
    return counts / np.maximum(denominator, 1.0)


@dataclass(frozen=True)
class _Past:
    """The events before the cut-off as arrays, users coded 0..n_users - 1, and the candidate rows in those codes
    (``row_user`` -1: a user without past events)."""

    cut: np.datetime64
    times: np.ndarray
    age: np.ndarray  # days from each event to the cut-off
    item: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    user: np.ndarray
    n_users: int
    order_key: pd.Series  # basket_id, or the event's day without basket_id
    n_items: int
    row_user: np.ndarray
    row_item: np.ndarray


def _past_events(
    candidates: pd.DataFrame, row_keys: np.ndarray, events: pd.DataFrame, cutoff: TimeLike,
    item_text: np.ndarray | None,
) -> _Past:
    cut = np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")
    all_times = events["occurred_at"].to_numpy().astype("datetime64[ns]")
    before = all_times < cut  # the point-in-time guarantee: nothing at or after the cut-off is read
    past = events.loc[before]
    times = all_times[before]
    item = past["item"].to_numpy(np.int64)
    users = pd.Index(pd.unique(past["user_key"]))
    row_item = candidates["item"].to_numpy(np.int64)
    row_keys = np.asarray(row_keys)
    row_user = users.get_indexer(row_keys[candidates["row"].to_numpy(np.int64)])
    n_items = int(max(row_item.max(initial=0), item.max(initial=0)))
    if item_text is not None:
        n_items = max(n_items, len(item_text) - 1)
    if "basket_id" in past.columns:
        order_key = pd.Series(past["basket_id"].to_numpy())
    else:
        order_key = pd.Series(times.astype("datetime64[D]"))
    return _Past(
        cut=cut, times=times, age=to_days(cut - times), item=item, quantity=past["quantity"].to_numpy(np.float64),
        price=past["unit_price"].to_numpy(np.float64), user=users.get_indexer(past["user_key"]), n_users=len(users),
        order_key=order_key, n_items=n_items, row_user=row_user, row_item=row_item,
    )


def _item_features(out: pd.DataFrame, past: _Past) -> np.ndarray:
    """Item popularity, price and freshness over everybody's past events; returns each item's last event time."""
    n_items, item, row_item = past.n_items, past.item, past.row_item
    purchases = np.bincount(item, minlength=n_items + 1).astype(np.float64)
    last_7 = np.bincount(item[past.age <= 7], minlength=n_items + 1).astype(np.float64)
    last_30 = np.bincount(item[past.age <= 30], minlength=n_items + 1).astype(np.float64)
    out["item_purchases"] = purchases[row_item]
    out["item_purchases_7d"] = last_7[row_item]
    out["item_purchases_30d"] = last_30[row_item]
    trend = np.divide(last_7 / 7.0, last_30 / 30.0, out=np.zeros(n_items + 1), where=last_30 > 0)
    out["item_trend"] = trend[row_item]
    by_item = pd.DataFrame({"item": item, "price": past.price, "time": past.times}).groupby("item")
    item_price = by_item["price"].median().reindex(np.arange(n_items + 1)).to_numpy(np.float64)
    first_seen = by_item["time"].min().reindex(np.arange(n_items + 1)).to_numpy()
    item_last = by_item["time"].max().reindex(np.arange(n_items + 1)).to_numpy()
    out["item_price"] = item_price[row_item]
    out["item_age_days"] = np.nan_to_num(to_days(past.cut - first_seen[row_item]), nan=0.0)
    return item_last


def _user_features(out: pd.DataFrame, past: _Past) -> tuple[np.ndarray, np.ndarray]:
    """User activity (recency, frequency, monetary) and the price ratio; needs ``item_price`` in ``out``. Returns
    each user's event count and last event time."""
    user, n_users, row_user = past.user, past.n_users, past.row_user
    by_user = pd.DataFrame({"user": user, "price": past.price, "time": past.times, "spend": past.quantity * past.price})
    by_user = by_user.groupby("user")
    user_events = np.bincount(user, minlength=n_users).astype(np.float64)
    user_last = by_user["time"].max().reindex(np.arange(n_users)).to_numpy()
    user_median_price = by_user["price"].median().reindex(np.arange(n_users)).to_numpy(np.float64)
    orders = pd.DataFrame({"user": user, "order": past.order_key, "time": past.times})
    # dropna=False: events with a missing basket_id form one order per user rather than vanishing.
    orders = orders.groupby(["user", "order"], dropna=False)["time"].min().groupby(level="user")
    n_orders = orders.size().reindex(np.arange(n_users), fill_value=0).to_numpy(np.float64)
    span = to_days((orders.max() - orders.min()).reindex(np.arange(n_users)).to_numpy())
    between = np.where(n_orders >= 2, span / np.maximum(n_orders - 1, 1), NEVER_DAYS)
    monetary = by_user["spend"].sum().reindex(np.arange(n_users)).to_numpy(np.float64)
    out["user_orders"] = lookup(n_orders, row_user, 0.0)
    out["user_events"] = lookup(user_events, row_user, 0.0)
    out["user_days_since_last"] = lookup(to_days(past.cut - user_last), row_user, NEVER_DAYS)
    out["user_days_between_orders"] = lookup(between, row_user, NEVER_DAYS)
    out["user_monetary"] = lookup(monetary, row_user, 0.0)
    user_price = lookup(user_median_price, row_user, np.nan)
    out["item_price_vs_user"] = price_vs_user(out["item_price"].to_numpy(), user_price)
    return user_events, user_last


def _user_item_features(out: pd.DataFrame, past: _Past) -> None:
    """User x item history: re-buying is the strongest signal in grocery-like data."""
    pairs = pd.DataFrame({"user": past.user, "item": past.item, "time": past.times}).groupby(["user", "item"])["time"]
    pair_stats = pairs.agg(["size", "max"])
    pair_user = pair_stats.index.get_level_values("user").to_numpy()
    pair_item = pair_stats.index.get_level_values("item").to_numpy()
    out["user_item_purchases"] = pair_lookup(
        pair_user, pair_item, pair_stats["size"].to_numpy(np.float64), past.row_user, past.row_item, 0.0
    )
    pair_last = pair_stats["max"].to_numpy().astype("datetime64[ns]")
    out["user_item_days_since"] = pair_lookup(
        pair_user, pair_item, to_days(past.cut - pair_last), past.row_user, past.row_item, NEVER_DAYS
    )


def _reorder_features(out: pd.DataFrame, past: _Past) -> None:
    """The re-order and quantity families, both over one per-(user, item, order) table."""
    orders, per_pair = pair_orders(past.user, past.item, past.times, past.quantity, past.order_key)
    repeat_features(out, orders, per_pair, past.user, past.item, past.n_users, past.n_items, past.age, past.row_user,
                    past.row_item)
    quantity_features(out, per_pair, past.user, past.item, past.quantity, past.quantity * past.price, past.cut,
                      past.n_users, past.n_items, past.row_user, past.row_item)


def _content_features(
    out: pd.DataFrame, past: _Past, user_events: np.ndarray, item_text: np.ndarray | None,
    item_attributes: pd.DataFrame | None, recent_items: int,
) -> None:
    """text_cosine and the attribute affinities, each only when its input is given."""
    if item_text is not None:
        if len(item_text) < past.n_items + 1:
            raise ValueError(f"item_text has {len(item_text)} rows, needs n_items + 1 = {past.n_items + 1}")
        out["text_cosine"] = _text_cosine(
            past.user, past.item, past.times, past.n_users, past.row_user, past.row_item, item_text, recent_items
        )
    if item_attributes is not None:
        for column, name in (("category", "category_affinity"), ("brand", "brand_affinity")):
            if column in item_attributes.columns:
                out[name] = _affinity(
                    item_attributes[column], past.n_items, past.user, past.item, user_events, past.row_user,
                    past.row_item
                )


def _features_as_of(past: _Past, user_last: np.ndarray, item_last: np.ndarray) -> np.ndarray:
    """The newest event behind each row's features: its user's or its item's last one (NaT when neither)."""
    user_seen = np.full(len(past.row_user), np.datetime64("NaT"), dtype="datetime64[ns]")
    known = past.row_user >= 0
    user_seen[known] = user_last[past.row_user[known]]
    item_seen = item_last[past.row_item].astype("datetime64[ns]")
    return np.fmax(user_seen, item_seen)  # fmax ignores NaT unless both are NaT


def _check_inputs(candidates: pd.DataFrame, events: pd.DataFrame, recent_items: int) -> None:
    check_events(events, recent_items)
    for column in ("row", "item"):
        if column not in candidates.columns:
            raise ValueError(f"candidates lack column {column!r}")


def check_events(events: pd.DataFrame, recent_items: int) -> None:
    """The events' columns (a frame's or an ``EventTable``'s) and ``recent_items``, as the features need them."""
    missing = [c for c in _EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack columns {missing}")
    if recent_items < 1:
        raise ValueError(f"recent_items must be >= 1, got {recent_items}")


def cutoff_groups(cutoffs: np.ndarray, max_groups: int = CUTOFF_GROUPS) -> tuple[np.ndarray, np.ndarray]:
    """Rows with their own cut-offs in at most ``max_groups`` groups of consecutive cut-offs and about equal size:
    (group per row, the group's cut-off: the earliest of its rows', so that no row reads past its own)."""
    cutoffs = np.asarray(cutoffs, dtype="datetime64[ns]")
    if np.isnat(cutoffs).any():
        raise ValueError("every row needs a cut-off; got NaT")
    distinct, inverse = np.unique(cutoffs, return_inverse=True)
    per_time = np.bincount(inverse, minlength=len(distinct))
    # Cut the sorted distinct times where the running row count crosses a multiple of n / max_groups, so rows
    # that share a cut-off stay together.
    group_of_time = np.minimum((np.cumsum(per_time) - per_time) * max_groups // max(len(cutoffs), 1), max_groups - 1)
    _, group_of_time = np.unique(group_of_time, return_inverse=True)
    group_cutoff = np.array([distinct[group_of_time == g].min() for g in range(group_of_time.max(initial=-1) + 1)],
                            dtype="datetime64[ns]")
    return group_of_time[inverse], group_cutoff


def compute_features(
    candidates: pd.DataFrame,
    row_keys: np.ndarray,
    events: pd.DataFrame,
    cutoff: TimeLike | np.ndarray,
    item_text: np.ndarray | None = None,
    item_attributes: pd.DataFrame | None = None,
    recent_items: int = DEFAULT_RECENT_ITEMS,
    behaviour: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The candidates with the FEATURE_DESCRIPTIONS columns and ``features_as_of`` added (a new frame).

    ``row_keys[row]`` is the user key of candidate row ``row`` (``EvalSet.keys``). Only ``events`` with
    ``occurred_at < cutoff`` are used; ``features_as_of`` is the latest event time a row's features read (its
    user's and its item's last events; NaT when neither has any), which ``future_event_rows`` checks.
    ``cutoff`` is one time, or one per row (leave-last-basket-out): then rows are grouped by ``cutoff_groups``
    and each group's features are as of its earliest cut-off, a little stale for some rows but never later
    than any row's own. ``text_cosine`` needs ``item_text`` ((n_items + 1, d), internal-id order, zero rows =
    no text); ``category_affinity`` / ``brand_affinity`` need those columns in ``item_attributes`` (indexed by
    internal id). ``behaviour`` (``behaviour_events``: views, carts, favourites) adds the BEHAVIOUR_FEATURES.
    Users without events before the cut-off get zeros and the NEVER_DAYS sentinel.
    """
    _check_inputs(candidates, events, recent_items)
    if np.ndim(cutoff) == 0:
        return _features_at(candidates, row_keys, events, cutoff, item_text, item_attributes, recent_items, behaviour)
    group_of_row, group_cutoff = cutoff_groups(np.asarray(cutoff))
    candidate_group = group_of_row[candidates["row"].to_numpy(np.int64)]
    order = np.arange(len(candidates))
    frames = [
        _features_at(candidates[candidate_group == g], row_keys, events, at, item_text, item_attributes,
                     recent_items, behaviour).assign(_order=order[candidate_group == g])
        for g, at in enumerate(group_cutoff) if (candidate_group == g).any()
    ]
    if not frames:  # no candidates: the empty frame with every column
        return _features_at(candidates, row_keys, events, pd.Timestamp.min, item_text, item_attributes, recent_items,
                            behaviour)
    return pd.concat(frames).sort_values("_order").drop(columns="_order")


def _features_at(
    candidates: pd.DataFrame, row_keys: np.ndarray, events: pd.DataFrame, cutoff: TimeLike,
    item_text: np.ndarray | None, item_attributes: pd.DataFrame | None, recent_items: int,
    behaviour: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``compute_features`` at one cut-off."""
    past = _past_events(candidates, row_keys, events, cutoff, item_text)
    out = candidates.copy()
    item_last = _item_features(out, past)
    user_events, user_last = _user_features(out, past)
    _user_item_features(out, past)
    _reorder_features(out, past)
    _content_features(out, past, user_events, item_text, item_attributes, recent_items)
    if behaviour is not None:
        add_behaviour_features(out, np.asarray(row_keys)[out["row"].to_numpy(np.int64)], behaviour, events, cutoff)
    out["features_as_of"] = _features_as_of(past, user_last, item_last)
    computed = [*feature_columns(out), "features_as_of"]
    return out[[*(c for c in candidates.columns if c not in computed), *computed]]


def purchase_events(interactions: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """``fct_interactions``-shaped purchases of known customers as ``compute_features`` reads them: internal item
    ids by ``item_ids`` (external id of internal id i + 1 at position i); items outside it are left out."""
    purchases = interactions
    if "event_type" in purchases:
        purchases = purchases[purchases["event_type"] == "purchase"]
    purchases = purchases[purchases["user_id"].notna()]
    items, known = internal_item_ids(purchases["item_id"], item_ids)
    return pd.DataFrame({
        "user_key": purchases["user_id"].to_numpy()[known],
        "item": items[known],
        "occurred_at": pd.to_datetime(purchases["occurred_at"]).to_numpy()[known],
        "quantity": purchases["quantity"].to_numpy(dtype=float)[known],
        "unit_price": purchases["unit_price"].to_numpy(dtype=float)[known],
        "basket_id": purchases["basket_id"].to_numpy()[known],
    })
