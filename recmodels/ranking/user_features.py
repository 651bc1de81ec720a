"""The candidate features of a few customers at one cut-off, computed with numpy on their own events.

Serving re-ranks a customer whenever they have new events: ``compute_features`` over that customer's events, then
the item-level columns from the table of every customer's events (the recommender's ``_with_item_features``).
Through pandas that costs dozens of group-bys whose fixed cost, not the few hundred events, is nearly all of a
request. ``compute_user_features`` builds the same frame with sorts and bincounts instead: the same columns, dtypes
and values, bit for bit, so that the ranker scores exactly as before. For that, sums are added as pandas' group-by
adds them (``np.add.reduceat`` over adjacent rows without NaN, else Kahan-compensated in row order), medians are
taken as pandas takes them (the mean of the two middle values) and every ratio is the same expression."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recmodels.event_table import EventTable
from recmodels.ranking.behaviour import BEHAVIOUR_FEATURES
from recmodels.ranking.features import (
    DEFAULT_RECENT_ITEMS,
    FEATURE_DESCRIPTIONS,
    _check_inputs,
    check_events,
    price_vs_user,
)
from recmodels.ranking.group_sums import adjacent, first_of_groups, group_median, group_sum
from recmodels.ranking.lookups import NEVER_DAYS, TimeLike, to_days
from recmodels.ranking.reorder import quantity_ratio
from recmodels.similarity import unit_rows

_TEXT_CHUNK = 16_384  # rows per einsum, as features._text_cosine takes them (the same calls, the same bits)
_NAT = np.iinfo(np.int64).min  # NaT as int64
# The item-level columns read from the item table only, never computed here: those of every customer's events.
_FROM_TABLE = ("item_purchases", "item_purchases_7d", "item_purchases_30d", "item_trend", "item_price", "item_age_days",
               "item_repeat_rate", "item_median_quantity")
_FROM_TABLE_BEHAVIOUR = ("item_views", "item_view_to_purchase")


@dataclass(frozen=True)
class _Events:
    """The purchases before the cut-off as arrays (in ``events`` order) and the candidate rows. Users are coded
    0..n_users - 1 over these purchases, the behaviour events and the rows' users alike; ``width`` exceeds every
    item id, so ``user * width + item`` codes a pair."""

    cut: np.datetime64
    times: np.ndarray  # int64 ns
    user: np.ndarray
    item: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    order: np.ndarray  # codes of basket_id (every missing one a single code), or of the day without basket_id
    n_users: int
    width: int
    row_user: np.ndarray
    row_item: np.ndarray

    def days_before_cut(self, times: np.ndarray) -> np.ndarray:
        return to_days(self.cut - times.view("datetime64[ns]"))

    def at_rows(self, pair_codes: np.ndarray, values: np.ndarray, default: float) -> np.ndarray:
        """``values`` of the sorted, distinct ``pair_codes`` at each row's (user, item); ``default`` elsewhere."""
        query = self.row_user * self.width + self.row_item
        out = np.full(len(query), default, dtype=np.float64)
        if len(pair_codes):
            position = np.minimum(np.searchsorted(pair_codes, query), len(pair_codes) - 1)
            found = pair_codes[position] == query
            out[found] = values[position[found]]
        return out


Table = pd.DataFrame | EventTable  # events as a frame or as arrays: both read alike here


def _values(table: Table, name: str, dtype: object = None) -> np.ndarray:
    return np.asarray(table[name], dtype)


def _arrays(rows: np.ndarray, row_item: np.ndarray, row_keys: np.ndarray, events: Table, behaviour: Table | None,
            cut: np.datetime64) -> tuple[_Events, dict[str, np.ndarray] | None]:
    """The purchases and behaviour events before ``cut`` as arrays, users coded together with the rows' users."""
    all_times = _values(events, "occurred_at").astype("datetime64[ns]")
    before = all_times < cut  # the point-in-time guarantee: nothing at or after the cut-off is read
    keys = [_values(events, "user_key")[before]]
    seen = None
    if behaviour is not None:
        viewed_at = _values(behaviour, "occurred_at").astype("datetime64[ns]")
        earlier = viewed_at < cut
        keys.append(_values(behaviour, "user_key")[earlier])
        seen = {"times": viewed_at[earlier], "item": _values(behaviour, "item", np.int64)[earlier],
                "kind": _values(behaviour, "event_type")[earlier],
                "count": np.nan_to_num(_values(behaviour, "quantity", np.float64)[earlier], nan=1.0)}
    keys.append(np.asarray(row_keys, dtype=object))
    codes, uniques = pd.factorize(np.concatenate(keys), use_na_sentinel=False)
    n_purchases = int(before.sum())
    item = _values(events, "item", np.int64)[before]
    if "basket_id" in events.columns:
        # Missing basket ids share one code, as pandas' groupby(dropna=False) puts them in one order per user.
        order = pd.factorize(_values(events, "basket_id")[before], use_na_sentinel=False)[0]
    else:
        order = np.unique(all_times[before].astype("datetime64[D]"), return_inverse=True)[1].reshape(-1)
    width = 1 + max(int(item.max(initial=0)), int(row_item.max(initial=0)),
                    int(seen["item"].max(initial=0)) if seen is not None else 0)
    if seen is not None:
        seen["user"] = codes[n_purchases:len(codes) - len(row_keys)]
    row_codes = codes[len(codes) - len(row_keys):]
    past = _Events(
        cut=cut, times=all_times[before].view(np.int64), user=codes[:n_purchases], item=item,
        quantity=_values(events, "quantity", np.float64)[before],
        price=_values(events, "unit_price", np.float64)[before],
        order=order.astype(np.int64), n_users=len(uniques), width=width,
        row_user=row_codes[rows], row_item=row_item,
    )
    return past, seen


def _user_columns(past: _Events, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Recency, frequency and monetary; returns each user's last purchase (int64 ns, NaT if none) and each row's
    user's median paid unit price."""
    n_users, user, rows = past.n_users, past.user, past.row_user
    events_of = np.bincount(user, minlength=n_users)
    last = np.full(n_users, _NAT)
    np.maximum.at(last, user, past.times)
    bought = events_of > 0
    # Orders: (user, order) pairs, each at its first event.
    n_order_codes = int(past.order.max(initial=-1)) + 1
    order_keys, order_of = np.unique(user * n_order_codes + past.order, return_inverse=True)
    order_time = np.full(len(order_keys), np.iinfo(np.int64).max)
    np.minimum.at(order_time, order_of.reshape(-1), past.times)
    order_user = order_keys // max(n_order_codes, 1)
    n_orders = np.bincount(order_user, minlength=n_users).astype(np.float64)
    first, latest = np.full(n_users, np.iinfo(np.int64).max), np.full(n_users, _NAT)
    np.minimum.at(first, order_user, order_time)
    np.maximum.at(latest, order_user, order_time)
    span = to_days((latest - first).view("timedelta64[ns]"))
    between = np.where(n_orders >= 2, span / np.maximum(n_orders - 1, 1), NEVER_DAYS)
    columns["user_orders"] = n_orders[rows]
    columns["user_events"] = events_of[rows].astype(np.float64)
    columns["user_days_since_last"] = np.where(bought, past.days_before_cut(last), NEVER_DAYS)[rows]
    columns["user_days_between_orders"] = between[rows]
    columns["user_monetary"] = group_sum(user, past.quantity * past.price, n_users, adjacent(user))[rows]
    mean_quantity = np.bincount(user, weights=past.quantity, minlength=n_users) / np.maximum(events_of, 1)
    columns["user_mean_quantity"] = mean_quantity[rows]
    return last, group_median(user, past.price, n_users)[rows]


def _pair_columns(past: _Events, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """User x item counts, recency, units and spend; returns (the sorted pair codes, each event's pair, each pair's
    last purchase in int64 ns)."""
    pairs, pair_of = np.unique(past.user * past.width + past.item, return_inverse=True)
    pair_of = pair_of.reshape(-1)
    n_pairs = len(pairs)
    last = np.full(n_pairs, _NAT)
    np.maximum.at(last, pair_of, past.times)
    columns["user_item_purchases"] = past.at_rows(pairs, np.bincount(pair_of, minlength=n_pairs).astype(float), 0.0)
    columns["user_item_days_since"] = past.at_rows(pairs, past.days_before_cut(last), NEVER_DAYS)
    recent = past.days_before_cut(past.times) <= 90
    columns["user_item_purchases_90d"] = past.at_rows(
        pairs, np.bincount(pair_of[recent], minlength=n_pairs).astype(float), 0.0)
    grouped = adjacent(pair_of)
    units = group_sum(pair_of, past.quantity, n_pairs, grouped)
    lines = np.bincount(pair_of[~np.isnan(past.quantity)], minlength=n_pairs)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_units = units / lines  # NaN for a pair without a known quantity, as pandas' mean
    columns["user_item_quantity"] = past.at_rows(pairs, units, 0.0)
    columns["user_item_mean_quantity"] = past.at_rows(pairs, mean_units, 0.0)
    spend = past.at_rows(pairs, group_sum(pair_of, past.quantity * past.price, n_pairs, grouped), 0.0)
    monetary = columns["user_monetary"]
    share = np.divide(spend, monetary, out=np.zeros(len(spend)), where=monetary > 0)
    columns["user_item_spend_share"] = np.clip(share, 0.0, 1.0)
    return pairs, pair_of, last


def _order_columns(past: _Events, columns: dict[str, np.ndarray], pairs: np.ndarray, pair_of: np.ndarray) -> None:
    """The re-order and stock columns from each (user, item, order): its time (the order's first event of the
    item) and units, in ``reorder.pair_orders``' order: by pair and time, equal times by first appearance."""
    n_pairs, n_order_codes = len(pairs), int(past.order.max(initial=-1)) + 1
    triples, triple_of = np.unique(pair_of * n_order_codes + past.order, return_inverse=True)
    triple_of = triple_of.reshape(-1)
    rows, starts = first_of_groups(triple_of, len(triples))
    time = np.minimum.reduceat(past.times[rows], starts) if len(rows) else np.array([], np.int64)
    appearance = rows[starts]  # the stable sort leaves each triple's first event first
    units = group_sum(triple_of, past.quantity, len(triples), adjacent(triple_of))
    pair, order = triples // max(n_order_codes, 1), triples % max(n_order_codes, 1)
    ranked = np.lexsort((appearance, time, pair))
    pair, order, time, units = pair[ranked], order[ranked], time[ranked], units[ranked]
    n_orders = np.bincount(pair, minlength=n_pairs)
    first_at = np.cumsum(n_orders) - n_orders
    last_at = first_at + n_orders - 1
    first, last, last_units = time[first_at], time[last_at], units[last_at]
    total_units = group_sum(pair, units, n_pairs, monotonic=True)  # sorted by pair

    span = to_days((last - first).view("timedelta64[ns]"))
    interval = np.where(n_orders >= 2, span / np.maximum(n_orders - 1, 1), NEVER_DAYS)
    columns["user_item_orders"] = past.at_rows(pairs, n_orders.astype(np.float64), 0.0)
    row_interval = past.at_rows(pairs, interval, NEVER_DAYS)
    columns["user_item_interval_days"] = row_interval
    regular = row_interval < NEVER_DAYS
    due = np.zeros(len(row_interval))
    # As reorder.repeat_features: a day is the finest rhythm that counts.
    due[regular] = columns["user_item_days_since"][regular] / np.maximum(row_interval[regular], 1.0)
    columns["user_item_due"] = due

    # An order re-orders when one of its items was in an earlier order: a triple that is not its pair's first.
    repeat = np.ones(len(pair), dtype=bool)
    repeat[first_at[n_orders > 0]] = False
    pair_user = pairs // past.width
    user_orders, order_of = np.unique(pair_user[pair] * n_order_codes + order, return_inverse=True)
    repeats = np.bincount(order_of.reshape(-1), weights=repeat.astype(np.float64), minlength=len(user_orders)) > 0
    owner = user_orders // max(n_order_codes, 1)
    n_user_orders = np.bincount(owner, minlength=past.n_users).astype(np.float64)
    repeat_orders = np.bincount(owner[repeats], minlength=past.n_users).astype(np.float64)
    share = np.divide(repeat_orders, n_user_orders - 1, out=np.zeros(past.n_users), where=n_user_orders >= 2)
    columns["user_repeat_share"] = np.minimum(share, 1.0)[past.row_user]

    consumed = total_units - last_units
    rhythm = (n_orders >= 2) & (span > 0) & (consumed > 0)
    cover = np.full(n_pairs, NEVER_DAYS)
    per_day = consumed[rhythm] / span[rhythm]
    cover[rhythm] = last_units[rhythm] / per_day - past.days_before_cut(last)[rhythm]
    columns["user_item_last_quantity"] = past.at_rows(pairs, last_units, 0.0)
    columns["days_of_stock_left"] = past.at_rows(pairs, cover, NEVER_DAYS)


def _text_cosine(past: _Events, item_text: np.ndarray, recent_items: int, pairs: np.ndarray,
                 pair_last: np.ndarray) -> np.ndarray:
    """``features._text_cosine`` over the same rows and vectors: each user's ``recent_items`` distinct items by
    their last purchase (equal times by id), added in that order; only the needed rows of ``item_text``."""
    pair_user, pair_item = pairs // past.width, pairs % past.width
    ranked = np.lexsort((pair_item, pair_last, pair_user))
    pair_user, pair_item = pair_user[ranked], pair_item[ranked]
    per_user = np.bincount(pair_user, minlength=past.n_users)
    from_end = np.cumsum(per_user)[pair_user] - np.arange(len(pair_user))  # 1 for each user's latest item
    chosen = from_end <= recent_items
    needed, position = np.unique(np.concatenate([pair_item[chosen], past.row_item]), return_inverse=True)
    position = position.reshape(-1)
    unit = unit_rows(item_text[needed])  # unit_rows works row by row: the same rows as over the whole table
    profile = np.zeros((past.n_users, unit.shape[1]), dtype=np.float64)
    chosen_user, chosen_unit = pair_user[chosen], unit[position[:len(pair_user[chosen])]]
    # In each user's order, one item per step: the additions of np.add.at in features._text_cosine.
    step = np.arange(len(chosen_user)) - np.searchsorted(chosen_user, chosen_user)
    for k in range(int(step.max(initial=-1)) + 1):
        profile[chosen_user[step == k]] += chosen_unit[step == k]
    profile = unit_rows(profile)
    row_unit = position[len(chosen_user):]
    cosine = np.zeros(len(past.row_user), dtype=np.float64)
    bought = np.bincount(past.user, minlength=past.n_users) > 0
    known = np.flatnonzero(bought[past.row_user])
    for start in range(0, len(known), _TEXT_CHUNK):
        index = known[start : start + _TEXT_CHUNK]
        cosine[index] = np.einsum("ij,ij->i", profile[past.row_user[index]], unit[row_unit[index]])
    return cosine


def _behaviour_columns(past: _Events, seen: dict[str, np.ndarray], columns: dict[str, np.ndarray]) -> None:
    """``behaviour.add_behaviour_features``' user x item columns (the item-level ones come from the table)."""
    age = past.days_before_cut(seen["times"].view(np.int64))
    pairs, pair_of = np.unique(seen["user"] * past.width + seen["item"], return_inverse=True)
    pair_of, n_pairs, count, kind = pair_of.reshape(-1), len(pairs), seen["count"], seen["kind"]

    # behaviour.py groups by (user, item), users numbered by first appearance among these events: its group ids
    # are monotonic where the rows are sorted by that.
    distinct, first_row = np.unique(seen["user"], return_index=True)
    numbered = np.zeros(past.n_users, np.int64)
    numbered[distinct] = np.argsort(np.argsort(first_row))
    sort_key = numbered[seen["user"]] * past.width + seen["item"]

    def total(mask: np.ndarray) -> np.ndarray:
        key = sort_key[mask]
        sums = group_sum(pair_of[mask], count[mask], n_pairs, bool((key[1:] >= key[:-1]).all()))
        return past.at_rows(pairs, sums, 0.0)

    def latest(mask: np.ndarray) -> np.ndarray:
        fewest = np.full(n_pairs, np.inf)
        np.minimum.at(fewest, pair_of[mask], age[mask])
        return past.at_rows(pairs, np.where(np.isinf(fewest), NEVER_DAYS, fewest), NEVER_DAYS)

    view, cart = kind == "view", kind == "cart"
    columns["user_item_views"] = total(view)
    for name, days in (("1h", 1 / 24), ("1d", 1.0), ("7d", 7.0)):
        columns[f"user_item_views_{name}"] = total(view & (age <= days))
    columns["user_item_days_since_view"] = latest(view)
    columns["user_item_carts"] = total(cart)
    since_cart = latest(cart)
    columns["user_item_days_since_cart"] = since_cart
    # The last purchase of the pair is its user_item_days_since: the same days, the same NEVER_DAYS default.
    carted = since_cart < NEVER_DAYS
    columns["user_item_carted_not_bought"] = (carted & (since_cart < columns["user_item_days_since"])).astype(float)
    columns["user_item_favourite"] = (total(kind == "favourite") > 0).astype(np.float64)


def _covered(past: _Events, item_features: pd.DataFrame, taken: list[str], item_text: np.ndarray | None,
             seen: dict[str, np.ndarray] | None) -> bool:
    """Whether ``user_feature_columns`` reproduces these inputs; the others take the general path, which also
    raises where it refuses them."""
    items = np.concatenate([past.item, past.row_item] + ([seen["item"]] if seen is not None else []))
    return (
        len(past.row_item) > 0
        and all(name in item_features.columns for name in taken)
        and all(name in taken for name in _FROM_TABLE + (_FROM_TABLE_BEHAVIOUR if seen is not None else ()))
        and int(items.min()) >= 0
        and int(past.row_item.max()) < len(item_features)
        # inf - inf in a sum is NaN, which pandas' compensation treats specially
        and not (np.isinf(past.quantity).any() or np.isinf(past.price).any())
        and (seen is None or bool(np.isfinite(seen["count"]).all()))
        and (item_text is None or int(max(past.item.max(initial=0), past.row_item.max())) < len(item_text))
    )


def compute_user_features(
    candidates: pd.DataFrame,
    row_keys: np.ndarray,
    events: Table,
    cutoff: TimeLike,
    item_features: pd.DataFrame,
    item_level: Sequence[str],
    item_text: np.ndarray | None = None,
    recent_items: int = DEFAULT_RECENT_ITEMS,
    behaviour: Table | None = None,
) -> pd.DataFrame | None:
    """``compute_features(candidates, row_keys, events, cutoff, item_text, recent_items=..., behaviour=...)`` with
    the ``item_level`` columns (the recommender's ITEM_LEVEL_FEATURES) taken from ``item_features`` at each row's
    item and the two ratios that read them recomputed, as the recommender's ``_with_item_features`` does: the same
    frame, built in numpy, for the rows of a few users at one cut-off.

    None where it does not reproduce that path, for the caller to take it: as ``user_feature_columns``, or
    candidates with a column named like a feature (``compute_features`` moves it among the features).
    """
    _check_inputs(candidates, events, recent_items)
    if any(name in FEATURE_DESCRIPTIONS or name == "features_as_of" for name in candidates.columns.tolist()):
        return None
    computed = user_feature_columns(candidates["row"].to_numpy(np.int64), candidates["item"].to_numpy(np.int64),
                                    row_keys, events, cutoff, item_features, item_level, item_text, recent_items,
                                    behaviour)
    return None if computed is None else feature_frame(candidates, *computed)


def user_feature_columns(
    rows: np.ndarray,
    items: np.ndarray,
    row_keys: np.ndarray,
    events: Table,
    cutoff: TimeLike,
    item_features: pd.DataFrame,
    item_level: Sequence[str],
    item_text: np.ndarray | None = None,
    recent_items: int = DEFAULT_RECENT_ITEMS,
    behaviour: Table | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """``compute_user_features`` of the candidates (``rows``, ``items``) as arrays: (feature name -> column,
    each row's ``features_as_of``), what ``feature_frame`` lays out as that frame. ``events`` and ``behaviour``
    are frames or ``EventTable``s.

    None where it does not reproduce ``compute_features``: an array of cut-offs, no candidates, an item table
    without one of the ``item_level`` columns, negative item ids, infinite quantities, prices or counts, or
    ``item_text`` without a row for some item (where ``compute_features`` refuses). There is no
    ``item_attributes``: the recommender never passes them, so category and brand affinities are left to
    ``compute_features``.
    """
    check_events(events, recent_items)
    if np.ndim(cutoff) != 0:
        return None
    cut = np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")
    past, seen = _arrays(np.asarray(rows, np.int64), np.asarray(items, np.int64), row_keys, events, behaviour, cut)
    # The item-level columns compute_features makes, each replaced by the table's
    taken = [name for name in item_level if name in FEATURE_DESCRIPTIONS
             and (seen is not None or name not in BEHAVIOUR_FEATURES)]
    if not _covered(past, item_features, taken, item_text, seen):
        return None
    items = past.row_item
    table = _table_columns(item_features, taken, items)
    columns: dict[str, np.ndarray] = {}
    user_last, user_price = _user_columns(past, columns)
    pairs, pair_of, pair_last = _pair_columns(past, columns)
    _order_columns(past, columns, pairs, pair_of)
    if item_text is not None:
        columns["text_cosine"] = _text_cosine(past, item_text, recent_items, pairs, pair_last)
    if seen is not None:
        _behaviour_columns(past, seen, columns)
    columns |= table
    # As _with_item_features: both ratios read the table's columns
    columns["item_price_vs_user"] = price_vs_user(columns["item_price"], user_price)
    columns["user_item_quantity_ratio"] = quantity_ratio(columns["user_item_mean_quantity"],
                                                         columns["item_median_quantity"])
    item_last = np.full(past.width, _NAT)
    np.maximum.at(item_last, past.item, past.times)
    user_seen = np.where(np.bincount(past.user, minlength=past.n_users) > 0, user_last, _NAT)[past.row_user]
    # fmax ignores NaT unless both are NaT, as features._features_as_of
    as_of = np.fmax(user_seen.view("datetime64[ns]"), item_last[items].view("datetime64[ns]"))
    return columns, as_of


def _table_columns(item_features: pd.DataFrame, taken: list[str], items: np.ndarray) -> dict[str, np.ndarray]:
    """The ``taken`` columns of the item table at ``items``, each in the table's dtype."""
    if all(dtype == np.float64 for dtype in item_features.dtypes):
        picked = item_features.to_numpy()[items]  # one gather rather than one per column
        position = {name: i for i, name in enumerate(item_features.columns.tolist())}
        return {name: picked[:, position[name]] for name in taken}
    return {name: item_features[name].to_numpy()[items] for name in taken}


@functools.lru_cache(maxsize=64)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    """The columns as an Index, built once per set of names: building it costs as much as the frame itself."""
    return pd.Index(names)


def feature_frame(candidates: pd.DataFrame, columns: dict[str, np.ndarray], as_of: np.ndarray) -> pd.DataFrame:
    """``candidates`` then the feature columns in FEATURE_DESCRIPTIONS order and ``features_as_of``, as
    ``compute_features`` lays them out."""
    names = [name for name in FEATURE_DESCRIPTIONS if name in columns]
    floats = tuple(name for name in names if columns[name].dtype == np.float64)
    block = np.empty((len(floats), len(candidates)))  # (columns, rows): pandas' own layout of a block
    for position, name in enumerate(floats):
        block[position] = columns[name]
    # One block of floats and one concat: far cheaper than a frame of some fifty separate columns.
    features = pd.DataFrame(block.T, columns=_column_index(floats), index=candidates.index, copy=False)
    for name in names:
        if name not in floats:  # a table column of another dtype keeps it
            features.insert(names.index(name), name, columns[name])
    as_of_frame = pd.DataFrame(as_of.reshape(-1, 1), columns=_column_index(("features_as_of",)),
                               index=candidates.index, copy=False)
    return pd.concat([candidates, features, as_of_frame], axis=1)  # no candidate column is named like a feature
