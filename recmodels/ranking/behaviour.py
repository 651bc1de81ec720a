"""Ranker features from what customers do besides buying: views, carts and favourites before the cut-off.

A customer who viewed an item this week, or carted it and has not bought it since, is far likelier to buy it than
purchases alone say; in a clickstream, most of what a customer does is of this kind.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recmodels.ranking.lookups import NEVER_DAYS, TimeLike, internal_item_ids, pair_lookup, to_days

BEHAVIOURS = ("view", "cart", "favourite")  # the non-purchase behaviours of fct_interactions.event_type

BEHAVIOUR_FEATURES: dict[str, str] = {
    "user_item_views": "the user's views of the item (repeated views count) before the cut-off",
    "user_item_views_1h": "the user's views of the item in the hour before the cut-off",
    "user_item_views_1d": "the user's views of the item in the day before the cut-off",
    "user_item_views_7d": "the user's views of the item in the 7 days before the cut-off",
    "user_item_days_since_view": f"days from the user's last view of the item to the cut-off; {NEVER_DAYS:g} if never",
    "user_item_carts": "times the user put the item in the cart before the cut-off",
    "user_item_days_since_cart": f"days from the user's last cart of the item to the cut-off; {NEVER_DAYS:g} if never",
    "user_item_carted_not_bought": "1 when the user's last cart of the item is later than their last purchase of "
    "it (or they never bought it), else 0",
    "user_item_favourite": "1 when the user marked the item as a favourite before the cut-off, else 0",
    "item_views": "views of the item by everybody before the cut-off",
    "item_view_to_purchase": "the item's purchases / (its views + 1) before the cut-off, everybody: how often a "
    "view turns into a sale",
}


def no_behaviour() -> pd.DataFrame:
    """A ``behaviour_events`` frame without events: for callers that have none (the MLflow pyfunc)."""
    return pd.DataFrame({"user_key": np.array([], object), "item": np.array([], np.int64),
                         "occurred_at": np.array([], "datetime64[ns]"), "event_type": np.array([], object),
                         "quantity": np.array([], np.float64)})


def behaviour_events(interactions: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """``fct_interactions``' views, carts and favourites of known customers as ``behaviour_features`` reads them:
    user_key, item (internal id by ``item_ids``; other items left out), occurred_at, event_type, quantity."""
    rows = interactions[interactions["event_type"].isin(BEHAVIOURS) & interactions["user_id"].notna()]
    items, known = internal_item_ids(rows["item_id"], item_ids)
    return pd.DataFrame({
        "user_key": rows["user_id"].to_numpy()[known],
        "item": items[known],
        "occurred_at": pd.to_datetime(rows["occurred_at"]).to_numpy()[known],
        "event_type": rows["event_type"].to_numpy()[known],
        "quantity": rows["quantity"].to_numpy(dtype=float)[known],
    })


def _per_pair(user: np.ndarray, item: np.ndarray, values: np.ndarray, how: str, row_user: np.ndarray,
              row_item: np.ndarray, default: float) -> np.ndarray:
    """``values`` aggregated (``how``) per (user, item) pair, looked up for each row's pair; ``default`` where a
    row's pair has none. Users coded -1 (outside the rows' index) are left out."""
    kept = user >= 0
    if not kept.any():
        return np.full(len(row_user), default)
    table = pd.DataFrame({"user": user[kept], "item": item[kept], "v": values[kept]}).groupby(["user", "item"])["v"]
    table = table.agg(how)
    return pair_lookup(table.index.get_level_values("user").to_numpy(), table.index.get_level_values("item").to_numpy(),
                       table.to_numpy(np.float64), row_user, row_item, default)


def add_behaviour_features(out: pd.DataFrame, row_user_keys: np.ndarray, behaviour: pd.DataFrame,
                           purchases: pd.DataFrame, cutoff: TimeLike) -> pd.DataFrame:
    """``out`` (candidates with ``item``) with the BEHAVIOUR_FEATURES columns; ``row_user_keys`` is each candidate's
    user key, ``behaviour`` a ``behaviour_events`` frame and ``purchases`` a ``purchase_events`` frame (both may
    hold events at or after ``cutoff``: only earlier ones are read)."""
    cut = np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")
    times = behaviour["occurred_at"].to_numpy().astype("datetime64[ns]")
    past = behaviour.loc[times < cut]
    past_times = times[times < cut]
    age = to_days(cut - past_times)
    kind = past["event_type"].to_numpy()
    users = pd.Index(pd.unique(np.concatenate([past["user_key"].to_numpy(), np.asarray(row_user_keys)])))
    user, item = users.get_indexer(past["user_key"]), past["item"].to_numpy(np.int64)
    row_user, row_item = users.get_indexer(np.asarray(row_user_keys)), out["item"].to_numpy(np.int64)
    count = np.nan_to_num(past["quantity"].to_numpy(np.float64), nan=1.0)

    def pair(mask: np.ndarray, values: np.ndarray, how: str, default: float) -> np.ndarray:
        return _per_pair(user[mask], item[mask], values[mask], how, row_user, row_item, default)

    view, cart, favourite = kind == "view", kind == "cart", kind == "favourite"
    out["user_item_views"] = pair(view, count, "sum", 0.0)
    for name, days in (("1h", 1 / 24), ("1d", 1.0), ("7d", 7.0)):
        out[f"user_item_views_{name}"] = pair(view & (age <= days), count, "sum", 0.0)
    out["user_item_days_since_view"] = pair(view, age, "min", NEVER_DAYS)
    out["user_item_carts"] = pair(cart, count, "sum", 0.0)
    out["user_item_days_since_cart"] = pair(cart, age, "min", NEVER_DAYS)
    # Carted and not bought since: the last cart is more recent than the last purchase of the item.
    bought_times = purchases["occurred_at"].to_numpy().astype("datetime64[ns]")
    bought = purchases.loc[bought_times < cut]
    days_since_bought = _per_pair(users.get_indexer(bought["user_key"]), bought["item"].to_numpy(np.int64),
                                  to_days(cut - bought_times[bought_times < cut]), "min", row_user, row_item,
                                  NEVER_DAYS)
    carted = out["user_item_days_since_cart"].to_numpy() < NEVER_DAYS
    out["user_item_carted_not_bought"] = (carted & (out["user_item_days_since_cart"].to_numpy()
                                                    < days_since_bought)).astype(np.float64)
    out["user_item_favourite"] = (pair(favourite, count, "sum", 0.0) > 0).astype(np.float64)
    n_items = int(max(row_item.max(initial=0), item.max(initial=0), purchases["item"].max() if len(purchases) else 0))
    item_views = np.bincount(item[view], weights=count[view], minlength=n_items + 1)
    item_sales = np.bincount(bought["item"].to_numpy(np.int64), minlength=n_items + 1).astype(np.float64)
    out["item_views"] = item_views[row_item]
    out["item_view_to_purchase"] = item_sales[row_item] / (item_views[row_item] + 1.0)
    return out
