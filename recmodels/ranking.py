"""Second stage of the recommender: candidates from several scorers, features, a LightGBM LambdaRank ranker.

Flow: ``generate_candidates`` (union of the sources' top items per evaluation row) -> ``compute_features``
(point-in-time features, only events before the cut-off) -> ``LambdaRanker`` -> ``rerank_topk`` ->
``recmodels.metrics.ranking_metrics``. ``leak_suspects`` and ``future_event_rows`` guard the features
against the commonest ranking bug: features computed with the answer in them.

A scorer maps ``histories`` to (B, n_items + 1) float32 scores with column 0 (PAD) at -inf, as every model in
``recmodels.baselines`` and ``SASRec.score`` do. Models are saved as LightGBM text plus JSON, never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from recmodels.sequences import PAD
from recmodels.similarity import unit_rows

Scorer = Callable[[list[np.ndarray]], np.ndarray]
TimeLike = pd.Timestamp | np.datetime64 | str

NEVER_DAYS = 10_000.0  # "days since" / "days between" with nothing to measure (never bought, < 2 orders)
FORMAT_VERSION = 2  # of ranker.json; bump when its fields change meaning (1: one model in ranker.txt)

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

_EVENT_COLUMNS = ("user_key", "item", "occurred_at", "quantity", "unit_price")


# ----------------------------------------------------------------------------------------------- candidates


def _full_ranking(scores: np.ndarray) -> np.ndarray:
    """(B, n_items) internal ids of every item, best first; ties to the lower id; NaN ranks with -inf."""
    items = np.asarray(scores, dtype=np.float64)[:, 1:]  # PAD is never a candidate
    items = np.where(np.isnan(items), -np.inf, items)
    # A stable sort keeps equal scores in column order, i.e. the lower id first.
    return np.argsort(-items, axis=1, kind="stable") + 1


def _empty_candidates(names: list[str]) -> pd.DataFrame:
    columns: dict[str, np.ndarray] = {"row": np.array([], np.int64), "item": np.array([], np.int64)}
    for name in names:
        columns[f"{name}_score"] = np.array([], np.float64)
        columns[f"{name}_rank"] = np.array([], np.int64)
    return pd.DataFrame(columns)


def generate_candidates(
    sources: Mapping[str, Scorer],
    histories: list[np.ndarray],
    n_candidates: int = 100,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Per row, the union of the sources' top items, taken round-robin by rank until ``n_candidates``.

    Rank 1 of every source (in ``sources`` order), then rank 2, ...; an item already taken is skipped, so a
    row gets ``min(n_candidates, n_items)`` distinct items. Columns: ``row`` (index into ``histories``),
    ``item``, and per source ``<source>_score`` (its raw score of the item) and ``<source>_rank`` (1-based
    rank in its full ranking, ties to the lower id), filled for every candidate. Sorted by (row, item).
    Rows are scored ``batch_size`` at a time, so memory is bounded by batch_size x n_items per source.
    """
    names = list(sources)
    if not names:
        raise ValueError("generate_candidates needs at least one source")
    if n_candidates < 1 or batch_size < 1:
        raise ValueError(f"n_candidates and batch_size must be >= 1, got {n_candidates}, {batch_size}")
    frames = []
    for start in range(0, len(histories), batch_size):
        batch = histories[start : start + batch_size]
        n_rows = len(batch)
        matrices = {name: np.asarray(scorer(batch)) for name, scorer in sources.items()}
        n_columns = matrices[names[0]].shape[1]
        for name, matrix in matrices.items():
            if matrix.shape != (n_rows, n_columns):
                raise ValueError(f"source {name!r} returned {matrix.shape}, expected {(n_rows, n_columns)}")
        orders = {name: _full_ranking(matrix) for name, matrix in matrices.items()}  # (B, n_items) each
        # Source 1 alone yields n_candidates distinct items by its rank n_candidates, so deeper ranks are
        # never reached and the interleaving stays small.
        depth = min(n_candidates, n_columns - 1)
        interleaved = np.stack([orders[name][:, :depth] for name in names], axis=2).reshape(n_rows, -1)
        # Keep the first occurrence of each item per row: sort by item (stably, so occurrences keep their
        # round-robin order), flag repeats, then cut each row after n_candidates kept items.
        by_item = np.argsort(interleaved, axis=1, kind="stable")
        sorted_items = np.take_along_axis(interleaved, by_item, axis=1)
        repeat_sorted = np.zeros_like(sorted_items, dtype=bool)
        repeat_sorted[:, 1:] = sorted_items[:, 1:] == sorted_items[:, :-1]
        repeat = np.empty_like(repeat_sorted)
        np.put_along_axis(repeat, by_item, repeat_sorted, axis=1)
        kept = ~repeat & (np.cumsum(~repeat, axis=1) <= n_candidates)
        rows, positions = np.nonzero(kept)
        items = interleaved[rows, positions]
        order = np.lexsort((items, rows))
        rows, items = rows[order], items[order]
        columns: dict[str, np.ndarray] = {"row": rows + start, "item": items}
        for name in names:
            rank = np.empty_like(orders[name])
            np.put_along_axis(rank, orders[name] - 1, np.arange(1, n_columns)[None, :], axis=1)
            columns[f"{name}_score"] = matrices[name][rows, items].astype(np.float64)
            columns[f"{name}_rank"] = rank[rows, items - 1].astype(np.int64)
        frames.append(pd.DataFrame(columns))
    if not frames:
        return _empty_candidates(names)
    return pd.concat(frames, ignore_index=True)


def candidate_recall(candidates: pd.DataFrame, targets: list[np.ndarray]) -> float:
    """Share of all (row, target item) pairs whose item is among the row's candidates; NaN without targets.

    The ceiling of any re-ranker: a target the candidates miss cannot be ranked back in.
    """
    lengths = np.array([len(t) for t in targets], dtype=np.int64)
    if lengths.sum() == 0:
        return float("nan")
    target_rows = np.repeat(np.arange(len(targets)), lengths)
    target_items = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets])
    rows = candidates["row"].to_numpy(np.int64)
    if len(rows) and rows.max() >= len(targets):
        raise ValueError(f"candidates have row {rows.max()} but only {len(targets)} target rows")
    width = int(max(target_items.max(), candidates["item"].max() if len(candidates) else 0)) + 1
    candidate_codes = rows * width + candidates["item"].to_numpy(np.int64)
    return float(np.isin(target_rows * width + target_items, candidate_codes).mean())


# ------------------------------------------------------------------------------------------------- features


def _pair_lookup(
    left: np.ndarray,
    right: np.ndarray,
    values: np.ndarray,
    query_left: np.ndarray,
    query_right: np.ndarray,
    default: float,
) -> np.ndarray:
    """values[i] of the pair (left[i], right[i]) equal to each query pair, ``default`` where none is.

    Pairs of non-negative ints are packed into one int64 so a sorted search replaces a DataFrame merge.
    Query pairs with a negative member (unknown user, missing category) get ``default``.
    """
    out = np.full(len(query_left), default, dtype=np.float64)
    if len(left) == 0:
        return out
    width = int(max(right.max(), query_right.max(initial=0))) + 1
    codes = left.astype(np.int64) * width + right
    order = np.argsort(codes, kind="stable")
    codes, values = codes[order], values[order]
    valid = (query_left >= 0) & (query_right >= 0)
    query = query_left[valid].astype(np.int64) * width + query_right[valid]
    position = np.minimum(np.searchsorted(codes, query), len(codes) - 1)
    found = codes[position] == query
    out[np.flatnonzero(valid)[found]] = values[position[found]]
    return out


def _lookup(values: np.ndarray, codes: np.ndarray, default: float) -> np.ndarray:
    """values[code], ``default`` where code is -1 (a user without events before the cut-off)."""
    safe = np.where(codes >= 0, codes, 0)
    return np.where(codes >= 0, values[safe] if len(values) else default, default).astype(np.float64)


def _days(delta: np.ndarray) -> np.ndarray:
    return delta / np.timedelta64(1, "D")


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


def _pair_orders(
    user: np.ndarray, item: np.ndarray, times: np.ndarray, quantity: np.ndarray, order_key: pd.Series
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each (user, item, order) with its time (the order's first event of the item) and units, sorted by (user,
    item, time); and per (user, item) its first and latest order time, orders, units and the latest order's
    units. Both the re-order and the quantity features read these."""
    lines = pd.DataFrame({"user": user, "item": item, "order": order_key.to_numpy(), "time": times,
                          "quantity": quantity})
    orders = lines.groupby(["user", "item", "order"], dropna=False, sort=False).agg(
        time=("time", "min"), units=("quantity", "sum")).reset_index()
    orders = orders.sort_values(["user", "item", "time"], kind="stable")
    per_pair = orders.groupby(["user", "item"], sort=False).agg(
        first=("time", "min"), last=("time", "max"), n_orders=("time", "size"), units=("units", "sum"),
        last_units=("units", "last"))
    return orders, per_pair


def _repeat_features(
    out: pd.DataFrame,
    orders: pd.DataFrame,
    per_pair: pd.DataFrame,
    user: np.ndarray,
    item: np.ndarray,
    n_users: int,
    n_items: int,
    age: np.ndarray,
    row_user: np.ndarray,
    row_item: np.ndarray,
) -> None:
    """Re-ordering as a habit: how often and how regularly a user re-orders an item, and how repeat-prone the
    item and the user are (see FEATURE_DESCRIPTIONS). Adds the columns to ``out``."""
    pair_user = per_pair.index.get_level_values("user").to_numpy()
    pair_item = per_pair.index.get_level_values("item").to_numpy()
    n_orders = per_pair["n_orders"].to_numpy(np.float64)
    span = _days((per_pair["last"] - per_pair["first"]).to_numpy())
    interval = np.where(n_orders >= 2, span / np.maximum(n_orders - 1, 1), NEVER_DAYS)
    out["user_item_orders"] = _pair_lookup(pair_user, pair_item, n_orders, row_user, row_item, 0.0)
    recent = age <= 90
    recent_pairs = pd.DataFrame({"user": user[recent], "item": item[recent]}).value_counts()
    out["user_item_purchases_90d"] = _pair_lookup(
        recent_pairs.index.get_level_values("user").to_numpy(), recent_pairs.index.get_level_values("item").to_numpy(),
        recent_pairs.to_numpy(np.float64), row_user, row_item, 0.0)
    row_interval = _pair_lookup(pair_user, pair_item, interval, row_user, row_item, NEVER_DAYS)
    out["user_item_interval_days"] = row_interval
    regular = row_interval < NEVER_DAYS
    due = np.zeros(len(out))
    # A zero interval (two orders the same instant) would divide by zero; a day is the finest rhythm that counts.
    due[regular] = out["user_item_days_since"].to_numpy()[regular] / np.maximum(row_interval[regular], 1.0)
    out["user_item_due"] = due
    buyers = np.bincount(pair_item, minlength=n_items + 1).astype(np.float64)
    repeaters = np.bincount(pair_item[n_orders >= 2], minlength=n_items + 1).astype(np.float64)
    item_repeat = np.divide(repeaters, buyers, out=np.zeros(n_items + 1), where=buyers > 0)
    out["item_repeat_rate"] = item_repeat[row_item]
    # An order re-orders when it holds an item the user had in an earlier order (``orders`` is in time order).
    is_repeat = orders.duplicated(["user", "item"], keep="first").to_numpy()
    per_order = pd.DataFrame({"user": orders["user"].to_numpy(), "order": orders["order"].to_numpy(),
                              "repeat": is_repeat}).groupby(["user", "order"], dropna=False, sort=False)["repeat"].any()
    users_of_orders = per_order.index.get_level_values("user").to_numpy()
    user_orders = np.bincount(users_of_orders, minlength=n_users).astype(np.float64)
    repeat_orders = np.bincount(users_of_orders[per_order.to_numpy()], minlength=n_users).astype(np.float64)
    share = np.divide(repeat_orders, user_orders - 1, out=np.zeros(n_users), where=user_orders >= 2)
    out["user_repeat_share"] = _lookup(np.minimum(share, 1.0), row_user, 0.0)


def quantity_ratio(mean_units: np.ndarray, item_median: np.ndarray) -> np.ndarray:
    """``user_item_quantity_ratio``: the user's mean units per line of the item over the item's median; 0 where the
    median is not positive (an item never sold)."""
    mean_units = np.asarray(mean_units, np.float64)
    item_median = np.asarray(item_median, np.float64)
    return np.divide(mean_units, item_median, out=np.zeros(len(mean_units)), where=item_median > 0)


def _quantity_features(
    out: pd.DataFrame,
    per_pair: pd.DataFrame,
    user: np.ndarray,
    item: np.ndarray,
    quantity: np.ndarray,
    spend: np.ndarray,
    cut: np.datetime64,
    n_users: int,
    n_items: int,
    row_user: np.ndarray,
    row_item: np.ndarray,
) -> None:
    """How much a user buys of an item: wholesale customers re-order what they buy in bulk, and a bulk order
    lasts longer before the next (see FEATURE_DESCRIPTIONS). Adds the columns to ``out``."""
    lines = pd.DataFrame({"user": user, "item": item, "quantity": quantity, "spend": spend})
    item_median = lines.groupby("item")["quantity"].median().reindex(np.arange(n_items + 1)).fillna(0.0)
    out["item_median_quantity"] = item_median.to_numpy(np.float64)[row_item]
    user_lines = np.bincount(user, minlength=n_users)
    user_mean = np.bincount(user, weights=quantity, minlength=n_users) / np.maximum(user_lines, 1)
    out["user_mean_quantity"] = _lookup(user_mean, row_user, 0.0)

    per_line = lines.groupby(["user", "item"], sort=False).agg(
        units=("quantity", "sum"), mean_units=("quantity", "mean"), spend=("spend", "sum"))
    line_user = per_line.index.get_level_values("user").to_numpy()
    line_item = per_line.index.get_level_values("item").to_numpy()

    def line_values(values: np.ndarray) -> np.ndarray:
        return _pair_lookup(line_user, line_item, np.asarray(values, np.float64), row_user, row_item, 0.0)

    out["user_item_quantity"] = line_values(per_line["units"].to_numpy())
    out["user_item_mean_quantity"] = line_values(per_line["mean_units"].to_numpy())
    out["user_item_quantity_ratio"] = quantity_ratio(out["user_item_mean_quantity"], out["item_median_quantity"])
    pair_spend = line_values(per_line["spend"].to_numpy())
    monetary = out["user_monetary"].to_numpy()
    # Refunds are not purchases, so the share lies in [0, 1]; the clip only absorbs float rounding.
    share = np.divide(pair_spend, monetary, out=np.zeros(len(out)), where=monetary > 0)
    out["user_item_spend_share"] = np.clip(share, 0.0, 1.0)

    # The latest order of the item is the stock; the orders before it, over the days they span, the rate of use.
    pair_user = per_pair.index.get_level_values("user").to_numpy()
    pair_item = per_pair.index.get_level_values("item").to_numpy()
    span = _days((per_pair["last"] - per_pair["first"]).to_numpy())
    last_units = per_pair["last_units"].to_numpy(np.float64)
    consumed = per_pair["units"].to_numpy(np.float64) - last_units
    rhythm = (per_pair["n_orders"].to_numpy() >= 2) & (span > 0) & (consumed > 0)
    cover = np.full(len(per_pair), NEVER_DAYS)
    per_day = consumed[rhythm] / span[rhythm]
    since = _days(cut - per_pair["last"].to_numpy().astype("datetime64[ns]"))
    cover[rhythm] = last_units[rhythm] / per_day - since[rhythm]
    out["user_item_last_quantity"] = _pair_lookup(pair_user, pair_item, last_units, row_user, row_item, 0.0)
    out["days_of_stock_left"] = _pair_lookup(pair_user, pair_item, cover, row_user, row_item, NEVER_DAYS)


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
    counts = _pair_lookup(pair_user, pair_code, pairs.to_numpy(np.float64), row_user, codes[row_item], 0.0)
    denominator = _lookup(user_events, row_user, 1.0)
    return counts / np.maximum(denominator, 1.0)


def compute_features(
    candidates: pd.DataFrame,
    row_keys: np.ndarray,
    events: pd.DataFrame,
    cutoff: TimeLike,
    item_text: np.ndarray | None = None,
    item_attributes: pd.DataFrame | None = None,
    recent_items: int = 10,
) -> pd.DataFrame:
    """The candidates with the FEATURE_DESCRIPTIONS columns and ``features_as_of`` added (a new frame).

    ``row_keys[row]`` is the user key of candidate row ``row`` (``EvalSet.keys``). Only ``events`` with
    ``occurred_at < cutoff`` are used; ``features_as_of`` is the latest event time a row's features read (its
    user's and its item's last events; NaT when neither has any), which ``future_event_rows`` checks.
    ``text_cosine`` needs ``item_text`` ((n_items + 1, d), internal-id order, zero rows = no text);
    ``category_affinity`` / ``brand_affinity`` need those columns in ``item_attributes`` (indexed by internal
    id). Users without events before the cut-off get zeros and the NEVER_DAYS sentinel.
    """
    missing = [c for c in _EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack columns {missing}")
    for column in ("row", "item"):
        if column not in candidates.columns:
            raise ValueError(f"candidates lack column {column!r}")
    if recent_items < 1:
        raise ValueError(f"recent_items must be >= 1, got {recent_items}")
    cut = np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")
    all_times = events["occurred_at"].to_numpy().astype("datetime64[ns]")
    before = all_times < cut  # the point-in-time guarantee: nothing at or after the cut-off is read
    past = events.loc[before]
    times = all_times[before]
    item = past["item"].to_numpy(np.int64)
    quantity = past["quantity"].to_numpy(np.float64)
    price = past["unit_price"].to_numpy(np.float64)
    users = pd.Index(pd.unique(past["user_key"]))
    user = users.get_indexer(past["user_key"])
    n_users = len(users)

    row_item = candidates["item"].to_numpy(np.int64)
    row_keys = np.asarray(row_keys)
    row_user = users.get_indexer(row_keys[candidates["row"].to_numpy(np.int64)])  # -1 = no past events
    n_items = int(max(row_item.max(initial=0), item.max(initial=0)))
    if item_text is not None:
        n_items = max(n_items, len(item_text) - 1)
    out = candidates.copy()

    # Item popularity and freshness over everybody's past events.
    age = _days(cut - times)
    purchases = np.bincount(item, minlength=n_items + 1).astype(np.float64)
    last_7 = np.bincount(item[age <= 7], minlength=n_items + 1).astype(np.float64)
    last_30 = np.bincount(item[age <= 30], minlength=n_items + 1).astype(np.float64)
    out["item_purchases"] = purchases[row_item]
    out["item_purchases_7d"] = last_7[row_item]
    out["item_purchases_30d"] = last_30[row_item]
    trend = np.divide(last_7 / 7.0, last_30 / 30.0, out=np.zeros(n_items + 1), where=last_30 > 0)
    out["item_trend"] = trend[row_item]
    by_item = pd.DataFrame({"item": item, "price": price, "time": times}).groupby("item")
    item_price = by_item["price"].median().reindex(np.arange(n_items + 1)).to_numpy(np.float64)
    first_seen = by_item["time"].min().reindex(np.arange(n_items + 1)).to_numpy()
    item_last = by_item["time"].max().reindex(np.arange(n_items + 1)).to_numpy()
    out["item_price"] = item_price[row_item]
    out["item_age_days"] = np.nan_to_num(_days(cut - first_seen[row_item]), nan=0.0)

    # User activity (recency, frequency, monetary).
    by_user = pd.DataFrame({"user": user, "price": price, "time": times, "spend": quantity * price})
    by_user = by_user.groupby("user")
    user_events = np.bincount(user, minlength=n_users).astype(np.float64)
    user_last = by_user["time"].max().reindex(np.arange(n_users)).to_numpy()
    user_median_price = by_user["price"].median().reindex(np.arange(n_users)).to_numpy(np.float64)
    if "basket_id" in past.columns:
        order_key = pd.Series(past["basket_id"].to_numpy())
    else:
        order_key = pd.Series(times.astype("datetime64[D]"))
    orders = pd.DataFrame({"user": user, "order": order_key, "time": times})
    # dropna=False: events with a missing basket_id form one order per user rather than vanishing.
    orders = orders.groupby(["user", "order"], dropna=False)["time"].min().groupby(level="user")
    n_orders = orders.size().reindex(np.arange(n_users), fill_value=0).to_numpy(np.float64)
    span = _days((orders.max() - orders.min()).reindex(np.arange(n_users)).to_numpy())
    between = np.where(n_orders >= 2, span / np.maximum(n_orders - 1, 1), NEVER_DAYS)
    monetary = by_user["spend"].sum().reindex(np.arange(n_users)).to_numpy(np.float64)
    out["user_orders"] = _lookup(n_orders, row_user, 0.0)
    out["user_events"] = _lookup(user_events, row_user, 0.0)
    out["user_days_since_last"] = _lookup(_days(cut - user_last), row_user, NEVER_DAYS)
    out["user_days_between_orders"] = _lookup(between, row_user, NEVER_DAYS)
    out["user_monetary"] = _lookup(monetary, row_user, 0.0)
    user_price = _lookup(user_median_price, row_user, np.nan)
    # A user without a (positive) median price gives no reference point, so the ratio is neutral, 1.
    item_price_row = out["item_price"].to_numpy()
    ratio = np.ones(len(out))
    has_reference = user_price > 0  # False for NaN
    ratio[has_reference] = item_price_row[has_reference] / user_price[has_reference]
    ratio[np.isnan(item_price_row)] = np.nan
    out["item_price_vs_user"] = ratio

    # User x item history: re-buying is the strongest signal in grocery-like data.
    pairs = pd.DataFrame({"user": user, "item": item, "time": times}).groupby(["user", "item"])["time"]
    pair_stats = pairs.agg(["size", "max"])
    pair_user = pair_stats.index.get_level_values("user").to_numpy()
    pair_item = pair_stats.index.get_level_values("item").to_numpy()
    out["user_item_purchases"] = _pair_lookup(
        pair_user, pair_item, pair_stats["size"].to_numpy(np.float64), row_user, row_item, 0.0
    )
    pair_last = pair_stats["max"].to_numpy().astype("datetime64[ns]")
    out["user_item_days_since"] = _pair_lookup(
        pair_user, pair_item, _days(cut - pair_last), row_user, row_item, NEVER_DAYS
    )

    pair_orders, per_pair = _pair_orders(user, item, times, quantity, order_key)
    _repeat_features(out, pair_orders, per_pair, user, item, n_users, n_items, age, row_user, row_item)
    _quantity_features(out, per_pair, user, item, quantity, quantity * price, cut, n_users, n_items, row_user, row_item)

    if item_text is not None:
        if len(item_text) < n_items + 1:
            raise ValueError(f"item_text has {len(item_text)} rows, needs n_items + 1 = {n_items + 1}")
        out["text_cosine"] = _text_cosine(
            user, item, times, n_users, row_user, row_item, item_text, recent_items
        )
    if item_attributes is not None:
        for column, name in (("category", "category_affinity"), ("brand", "brand_affinity")):
            if column in item_attributes.columns:
                out[name] = _affinity(
                    item_attributes[column], n_items, user, item, user_events, row_user, row_item
                )

    # The newest event behind the row's features: its user's or its item's last one (NaT when neither).
    user_seen = np.full(len(out), np.datetime64("NaT"), dtype="datetime64[ns]")
    known = row_user >= 0
    user_seen[known] = user_last[row_user[known]]
    item_seen = item_last[row_item].astype("datetime64[ns]")
    as_of = np.fmax(user_seen, item_seen)  # fmax ignores NaT unless both are NaT
    out["features_as_of"] = as_of
    computed = [*feature_columns(out), "features_as_of"]
    return out[[*(c for c in candidates.columns if c not in computed), *computed]]


def feature_columns(features: pd.DataFrame) -> list[str]:
    """The FEATURE_DESCRIPTIONS columns present in ``features``, in their stable order."""
    return [name for name in FEATURE_DESCRIPTIONS if name in features.columns]


# --------------------------------------------------------------------------------------------- leak checks


def single_feature_auc(features: pd.DataFrame, labels: np.ndarray, columns: list[str]) -> dict[str, float]:
    """max(AUC, 1 - AUC) of each column alone as a purchase predictor, over rows with a 0/1 label.

    Rows whose label is NaN are unlabelled and skipped. NaN feature values rank below every number, so a
    feature whose missingness alone separates the classes is caught too. Ties count half (Mann-Whitney).
    """
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) != len(features):
        raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
    labelled = ~np.isnan(labels)
    y = labels[labelled]
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0, 1 or NaN (unlabelled)")
    n_positive, n_negative = int(y.sum()), int(len(y) - y.sum())
    if n_positive == 0 or n_negative == 0:
        raise ValueError(f"need both classes for an AUC, got {n_positive} positives, {n_negative} negatives")
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"features lack columns {missing}")
    out = {}
    for column in columns:
        values = features[column].to_numpy(np.float64)[labelled]
        ranks = rankdata(np.where(np.isnan(values), -np.inf, values))
        auc = (ranks[y == 1].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
        out[column] = float(max(auc, 1.0 - auc))
    return out


def leak_suspects(
    features: pd.DataFrame, labels: np.ndarray, columns: list[str], max_auc: float = 0.98
) -> dict[str, float]:
    """Columns whose single-feature AUC (see ``single_feature_auc``) exceeds ``max_auc``, highest first.

    A feature that alone nearly separates purchases from non-purchases was almost certainly computed with
    the answer in it (a window that overlaps the targets, a label-derived column).
    """
    auc = single_feature_auc(features, labels, columns)
    return dict(sorted(((c, a) for c, a in auc.items() if a > max_auc), key=lambda pair: -pair[1]))


def future_event_rows(features: pd.DataFrame, cutoff: TimeLike) -> int:
    """Rows whose ``features_as_of`` is at or after ``cutoff``: each one read an event it must not see."""
    as_of = features["features_as_of"].to_numpy().astype("datetime64[ns]")
    return int((as_of >= np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")).sum())


# -------------------------------------------------------------------------------------------------- ranker


@dataclass(frozen=True)
class RankerConfig:
    """LightGBM LambdaRank settings; the defaults suit ~1k users x 100 candidates."""

    objective: str = "lambdarank"  # pairwise loss weighted by the NDCG change of swapping two items
    n_estimators: int = 1000  # boosting rounds at most; early stopping usually ends far sooner
    learning_rate: float = 0.05  # shrinkage per tree
    num_leaves: int = 31  # leaves per tree
    min_data_in_leaf: int = 50  # rows per leaf at least; guards against fitting single users
    feature_fraction: float = 0.9  # share of features each tree may use
    early_stopping_rounds: int = 50  # stop after this many rounds without held-out NDCG gain
    valid_fraction: float = 0.2  # share of rows (users), not of candidates, held out for early stopping
    eval_at: int = 10  # K of the held-out NDCG@K
    # Models averaged, each early-stopped on its own held-out users (seed + i): together they learn from every user,
    # and the average is steadier than one model (on Online Retail, 5 models +0.008 NDCG@10; BENCHMARKS.md).
    n_models: int = 5
    seed: int = 42  # held-out split and every LightGBM random choice of the first model
    deterministic: bool = True  # same data + same threads -> same model
    num_threads: int = 0  # 0 = LightGBM's default (OpenMP's thread count)

    def lightgbm_params(self, seed: int | None = None) -> dict:
        return {
            "objective": self.objective,
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "seed": self.seed if seed is None else seed,
            "deterministic": self.deterministic,
            # LightGBM's docs: deterministic results also need a fixed histogram layout.
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }


def _matrix(features: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    missing = [name for name in feature_names if name not in features.columns]
    if missing:
        raise ValueError(f"features lack columns the ranker needs: {missing}")
    return features[feature_names].to_numpy(np.float64)


@dataclass
class LambdaRanker:
    """An average of ``config.n_models`` LightGBM LambdaRank models over candidate features, one query group per
    evaluation row; model i holds out its own users (seed ``config.seed + i``) for early stopping.

    Groups without any positive carry no ranking signal (every order has NDCG 0), so ``fit`` drops them and
    counts them in ``n_groups_dropped_``. The held-out NDCG is therefore over rows whose candidates hold a
    target: an upper bound of the end-to-end NDCG, which also pays for the candidates' misses.
    """

    config: RankerConfig = field(default_factory=RankerConfig)
    feature_names: list[str] = field(default_factory=list, init=False)
    boosters_: list[lgb.Booster] = field(default_factory=list, init=False, repr=False)
    best_iterations_: list[int] = field(default_factory=list, init=False)  # rounds kept per model (1-based)
    valid_ndcg_: float = field(default=float("nan"), init=False)  # mean held-out NDCG@eval_at at the best rounds
    n_groups_dropped_: int = field(default=0, init=False)  # groups without a positive, left out of training

    def fit(
        self, features: pd.DataFrame, labels: np.ndarray, rows: np.ndarray, feature_names: list[str]
    ) -> LambdaRanker:
        """Trains on ``features[feature_names]``; ``labels`` 0/1 and ``rows`` (group id) per feature row."""
        if self.config.n_models < 1:
            raise ValueError(f"n_models must be >= 1, got {self.config.n_models}")
        x = _matrix(features, list(feature_names))
        labels = np.asarray(labels)
        rows = np.asarray(rows)
        if not (len(labels) == len(rows) == len(x)):
            raise ValueError(f"{len(x)} feature rows, {len(labels)} labels, {len(rows)} group ids")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be 0 or 1")
        if labels.sum() == 0:
            raise ValueError("no positive label at all: nothing to rank (are the targets in the candidates?)")
        order = np.argsort(rows, kind="stable")  # LightGBM wants each group's rows contiguous
        x, labels, rows = x[order], labels[order].astype(np.float64), rows[order]
        groups, starts, sizes = np.unique(rows, return_index=True, return_counts=True)
        has_positive = np.add.reduceat(labels, starts) > 0
        self.n_groups_dropped_ = int((~has_positive).sum())
        kept_groups = np.flatnonzero(has_positive)
        group_of_row = np.repeat(np.arange(len(groups)), sizes)

        def dataset(chosen: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
            mask = np.isin(group_of_row, chosen)
            return lgb.Dataset(
                x[mask],
                label=labels[mask],
                group=sizes[chosen],
                feature_name=list(feature_names),
                reference=reference,
                params={"verbosity": -1},
            )

        n_valid = int(round(self.config.valid_fraction * len(kept_groups)))
        if self.config.valid_fraction > 0 and len(kept_groups) >= 2:
            n_valid = min(max(n_valid, 1), len(kept_groups) - 1)
        else:
            n_valid = 0
        boosters, best_iterations, valid_ndcgs = [], [], []
        for member in range(self.config.n_models):
            seed = self.config.seed + member
            # Users, not candidate rows, are held out, so no user is in both the training and the stopping set.
            shuffled = np.random.default_rng(seed).permutation(kept_groups)
            train_set = dataset(np.sort(shuffled[n_valid:]))
            params = self.config.lightgbm_params(seed)
            if n_valid:
                valid_set = dataset(np.sort(shuffled[:n_valid]), reference=train_set)
                booster = lgb.train(
                    params,
                    train_set,
                    num_boost_round=self.config.n_estimators,
                    valid_sets=[valid_set],
                    valid_names=["held_out"],
                    callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
                )
                best_iterations.append(int(booster.best_iteration) or booster.current_iteration())
                valid_ndcgs.append(float(booster.best_score["held_out"][f"ndcg@{self.config.eval_at}"]))
            else:
                booster = lgb.train(params, train_set, num_boost_round=self.config.n_estimators)
                best_iterations.append(booster.current_iteration())
            boosters.append(booster)
        self.boosters_, self.best_iterations_ = boosters, best_iterations
        self.valid_ndcg_ = float(np.mean(valid_ndcgs)) if valid_ndcgs else float("nan")
        self.feature_names = list(feature_names)
        return self

    def _boosters(self) -> list[lgb.Booster]:
        if not self.boosters_:
            raise ValueError("the ranker is not fitted; call fit or LambdaRanker.load first")
        return self.boosters_

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """(n,) float64 scores, higher = rank higher; only the order within a row means anything."""
        boosters = self._boosters()
        x = _matrix(features, self.feature_names)
        total = np.zeros(len(x))
        for booster, rounds in zip(boosters, self.best_iterations_):
            total += booster.predict(x, num_iteration=rounds)
        return total / len(boosters)

    def feature_importance(self) -> pd.DataFrame:
        """Per feature: total gain and number of splits over every model's kept trees, by gain descending."""
        boosters = self._boosters()
        gain = sum(b.feature_importance("gain", iteration=n) for b, n in zip(boosters, self.best_iterations_))
        split = sum(b.feature_importance("split", iteration=n) for b, n in zip(boosters, self.best_iterations_))
        table = pd.DataFrame({"feature": self.feature_names, "gain": gain, "split": split})
        return table.sort_values(["gain", "feature"], ascending=[False, True], kind="stable").reset_index(
            drop=True
        )

    def save(self, folder: str | Path) -> Path:
        """Writes ``ranker-<i>.txt`` per model (LightGBM's text model, kept trees only) and ``ranker.json``; no
        pickle."""
        boosters = self._boosters()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for member, (booster, rounds) in enumerate(zip(boosters, self.best_iterations_)):
            files.append(f"ranker-{member}.txt")
            booster.save_model(str(folder / files[-1]), num_iteration=rounds)
        meta = {
            "format_version": FORMAT_VERSION,
            "feature_names": self.feature_names,
            "config": asdict(self.config),
            "model_files": files,
            "best_iterations": self.best_iterations_,
            "valid_ndcg": None if np.isnan(self.valid_ndcg_) else self.valid_ndcg_,
            "n_groups_dropped": self.n_groups_dropped_,
        }
        (folder / "ranker.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LambdaRanker:
        """The ranker ``save`` wrote to ``folder``; it scores exactly as the saved one did. Also reads format 1
        (one model in ``ranker.txt``), so champions registered before ensembles still load."""
        folder = Path(folder)
        meta = json.loads((folder / "ranker.json").read_text())
        version = meta.get("format_version")
        if version == 1:
            files, rounds = ["ranker.txt"], [int(meta["best_iteration"])]
            config = {**meta["config"], "n_models": 1}
        elif version == FORMAT_VERSION:
            files, rounds, config = meta["model_files"], [int(n) for n in meta["best_iterations"]], meta["config"]
        else:
            raise ValueError(f"ranker.json format {version}, expected {FORMAT_VERSION} (or 1)")
        ranker = cls(config=RankerConfig(**config))
        ranker.boosters_ = [lgb.Booster(model_file=str(folder / name)) for name in files]
        if any(booster.feature_name() != meta["feature_names"] for booster in ranker.boosters_):
            raise ValueError(f"the model files in {folder} and ranker.json disagree on the feature names")
        ranker.feature_names = list(meta["feature_names"])
        ranker.best_iterations_ = rounds
        ranker.valid_ndcg_ = float("nan") if meta["valid_ndcg"] is None else float(meta["valid_ndcg"])
        ranker.n_groups_dropped_ = int(meta["n_groups_dropped"])
        return ranker


# ---------------------------------------------------------------------------------------------- re-ranking


def rerank_topk(candidates: pd.DataFrame, scores: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """(n_rows, k) internal ids per row by descending score (ties to the lower id; NaN last), 0-padded.

    A row with fewer than ``k`` candidates (or none) is padded with PAD (0), which never matches a target in
    ``recmodels.metrics.ranking_metrics``, so padding counts as a miss.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(candidates):
        raise ValueError(f"{len(scores)} scores for {len(candidates)} candidates")
    rows = candidates["row"].to_numpy(np.int64)
    items = candidates["item"].to_numpy(np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"candidate rows must be in 0..{n_rows - 1}")
    order = np.lexsort((items, -np.where(np.isnan(scores), -np.inf, scores), rows))
    rows, items = rows[order], items[order]
    position = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = position < k
    topk = np.full((n_rows, k), PAD, dtype=np.int64)
    topk[rows[keep], position[keep]] = items[keep]
    return topk


def ranker_feature_names(candidates: pd.DataFrame) -> list[str]:
    """Every column the ranker reads: each source's score and rank, then the named features."""
    sources = [c for c in candidates.columns if c.endswith(("_score", "_rank"))]
    return sources + feature_columns(candidates)


def candidate_labels(candidates: pd.DataFrame, targets: list[np.ndarray]) -> np.ndarray:
    """(len(candidates),) int8: 1 where the candidate's item is among its row's targets."""
    lengths = [len(t) for t in targets]
    bought = pd.DataFrame({
        "row": np.repeat(np.arange(len(targets)), lengths),
        "item": np.concatenate(targets) if sum(lengths) else np.array([], dtype=np.int64),
        "label": np.int8(1),
    })
    merged = candidates[["row", "item"]].merge(bought, on=["row", "item"], how="left")
    return merged["label"].fillna(0).to_numpy(dtype=np.int8)


def purchase_events(interactions: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """``fct_interactions``-shaped purchases of known customers as ``compute_features`` reads them: internal item
    ids by ``item_ids`` (external id of internal id i + 1 at position i); items outside it are left out."""
    purchases = interactions
    if "event_type" in purchases:
        purchases = purchases[purchases["event_type"] == "purchase"]
    purchases = purchases[purchases["user_id"].notna()]
    internal = pd.Series(np.arange(1, len(item_ids) + 1), index=pd.Index(np.asarray(item_ids).astype(str)))
    items = internal.reindex(purchases["item_id"].astype(str).to_numpy()).to_numpy()
    known = ~np.isnan(items)
    return pd.DataFrame({
        "user_key": purchases["user_id"].to_numpy()[known],
        "item": items[known].astype(np.int64),
        "occurred_at": pd.to_datetime(purchases["occurred_at"]).to_numpy()[known],
        "quantity": purchases["quantity"].to_numpy(dtype=float)[known],
        "unit_price": purchases["unit_price"].to_numpy(dtype=float)[known],
        "basket_id": purchases["basket_id"].to_numpy()[known],
    })
