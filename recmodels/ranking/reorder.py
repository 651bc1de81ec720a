"""Re-order and quantity features: how often, how regularly and how much a user buys an item again.

Both families read the per-(user, item, order) table of ``pair_orders``, built once per ``compute_features``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recmodels.ranking.lookups import NEVER_DAYS, lookup, pair_lookup, to_days


def pair_orders(
    user: np.ndarray, item: np.ndarray, times: np.ndarray, quantity: np.ndarray, order_key: pd.Series
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each (user, item, order) with its time (the order's first event of the item) and units, sorted by (user,
    item, time); and per (user, item) its first and latest order time, orders, units and the latest order's
    units."""
    lines = pd.DataFrame({"user": user, "item": item, "order": order_key.to_numpy(), "time": times,
                          "quantity": quantity})
    # One aggregation call per column rather than a named .agg(): the same results without the named form's
    # fixed cost, which dominates when a service computes one customer's features per request.
    by_order = lines.groupby(["user", "item", "order"], dropna=False, sort=False)
    orders = pd.DataFrame({"time": by_order["time"].min(), "units": by_order["quantity"].sum()}).reset_index()
    orders = orders.sort_values(["user", "item", "time"], kind="stable")
    by_pair = orders.groupby(["user", "item"], sort=False)
    per_pair = pd.DataFrame({"first": by_pair["time"].min(), "last": by_pair["time"].max(),
                             "n_orders": by_pair["time"].size(), "units": by_pair["units"].sum(),
                             "last_units": by_pair["units"].last()})
    return orders, per_pair


def repeat_features(
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
    span = to_days((per_pair["last"] - per_pair["first"]).to_numpy())
    interval = np.where(n_orders >= 2, span / np.maximum(n_orders - 1, 1), NEVER_DAYS)
    out["user_item_orders"] = pair_lookup(pair_user, pair_item, n_orders, row_user, row_item, 0.0)
    recent = age <= 90
    recent_pairs = pd.DataFrame({"user": user[recent], "item": item[recent]}).value_counts()
    out["user_item_purchases_90d"] = pair_lookup(
        recent_pairs.index.get_level_values("user").to_numpy(), recent_pairs.index.get_level_values("item").to_numpy(),
        recent_pairs.to_numpy(np.float64), row_user, row_item, 0.0)
    row_interval = pair_lookup(pair_user, pair_item, interval, row_user, row_item, NEVER_DAYS)
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
    out["user_repeat_share"] = lookup(np.minimum(share, 1.0), row_user, 0.0)


def quantity_ratio(mean_units: np.ndarray, item_median: np.ndarray) -> np.ndarray:
    """``user_item_quantity_ratio``: the user's mean units per line of the item over the item's median; 0 where the
    median is not positive (an item never sold)."""
    mean_units = np.asarray(mean_units, np.float64)
    item_median = np.asarray(item_median, np.float64)
    return np.divide(mean_units, item_median, out=np.zeros(len(mean_units)), where=item_median > 0)


def quantity_features(
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
    out["user_mean_quantity"] = lookup(user_mean, row_user, 0.0)

    by_line = lines.groupby(["user", "item"], sort=False)
    per_line = pd.DataFrame({"units": by_line["quantity"].sum(), "mean_units": by_line["quantity"].mean(),
                             "spend": by_line["spend"].sum()})
    line_user = per_line.index.get_level_values("user").to_numpy()
    line_item = per_line.index.get_level_values("item").to_numpy()

    def line_values(values: np.ndarray) -> np.ndarray:
        return pair_lookup(line_user, line_item, np.asarray(values, np.float64), row_user, row_item, 0.0)

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
    span = to_days((per_pair["last"] - per_pair["first"]).to_numpy())
    last_units = per_pair["last_units"].to_numpy(np.float64)
    consumed = per_pair["units"].to_numpy(np.float64) - last_units
    rhythm = (per_pair["n_orders"].to_numpy() >= 2) & (span > 0) & (consumed > 0)
    cover = np.full(len(per_pair), NEVER_DAYS)
    per_day = consumed[rhythm] / span[rhythm]
    since = to_days(cut - per_pair["last"].to_numpy().astype("datetime64[ns]"))
    cover[rhythm] = last_units[rhythm] / per_day - since[rhythm]
    out["user_item_last_quantity"] = pair_lookup(pair_user, pair_item, last_units, row_user, row_item, 0.0)
    out["days_of_stock_left"] = pair_lookup(pair_user, pair_item, cover, row_user, row_item, NEVER_DAYS)
