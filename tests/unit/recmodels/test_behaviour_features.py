"""Ranker features from views, carts and favourites, against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from recmodels.ranking import compute_features
from recmodels.ranking.behaviour import BEHAVIOUR_FEATURES, behaviour_events
from recmodels.ranking.lookups import NEVER_DAYS

CUTOFF = pd.Timestamp("2024-01-10")
T = pd.Timestamp


def _behaviour():
    rows = [("a", 1, T("2024-01-09 23:30"), "view", 1), ("a", 1, T("2024-01-05"), "view", 2),
            ("a", 2, T("2024-01-08"), "cart", 1), ("a", 3, T("2024-01-02"), "favourite", 1),
            ("a", 2, T("2024-01-10 01:00"), "view", 1),  # after the cut-off: never read
            ("b", 1, T("2024-01-03"), "view", 1)]
    return pd.DataFrame(rows, columns=["user_key", "item", "occurred_at", "event_type", "quantity"])


PURCHASES = pd.DataFrame({"user_key": ["a", "b"], "item": [2, 1], "occurred_at": [T("2024-01-06"), T("2024-01-04")],
                          "quantity": [1.0, 1.0], "unit_price": [2.0, 3.0], "basket_id": ["x", "y"]})
CANDIDATES = pd.DataFrame({"row": [0, 0, 0, 1], "item": [1, 2, 3, 1]})
KEYS = np.array(["a", "b"], dtype=object)
NEVER = NEVER_DAYS
EXPECTED = {  # (row, item): views, 1h, 1d, 7d, days since view, carts, days since cart, carted not bought, favourite
    (0, 1): (3, 1, 1, 3, 0.5 / 24, 0, NEVER, 0, 0),
    (0, 2): (0, 0, 0, 0, NEVER, 1, 2.0, 1, 0),  # carted on the 8th, after buying it on the 6th
    (0, 3): (0, 0, 0, 0, NEVER, 0, NEVER, 0, 1),
    (1, 1): (1, 0, 0, 1, 7.0, 0, NEVER, 0, 0),
}
ITEMS = {1: (4, 1 / 5), 2: (0, 1.0), 3: (0, 0.0)}  # views by everybody, purchases / (views + 1)


def test_behaviour_features_match_hand_computed_values():
    features = compute_features(CANDIDATES, KEYS, PURCHASES, CUTOFF, behaviour=_behaviour())
    assert set(BEHAVIOUR_FEATURES) <= set(features.columns)
    names = ["user_item_views", "user_item_views_1h", "user_item_views_1d", "user_item_views_7d",
             "user_item_days_since_view", "user_item_carts", "user_item_days_since_cart",
             "user_item_carted_not_bought", "user_item_favourite"]
    for record in features.to_dict("records"):
        key = (record["row"], record["item"])
        assert [record[n] for n in names] == pytest.approx(list(EXPECTED[key])), key
        assert (record["item_views"], record["item_view_to_purchase"]) == pytest.approx(ITEMS[record["item"]])
    without = compute_features(CANDIDATES, KEYS, PURCHASES, CUTOFF)
    assert not set(BEHAVIOUR_FEATURES) & set(without.columns)  # a shop of purchases only gets none of them


def test_a_view_changes_the_features_of_that_customer_and_item_only():
    before = compute_features(CANDIDATES, KEYS, PURCHASES, CUTOFF, behaviour=_behaviour())
    viewed = pd.concat([_behaviour(), pd.DataFrame([("b", 1, T("2024-01-09 12:00"), "view", 1)],
                                                   columns=_behaviour().columns)])
    after = compute_features(CANDIDATES, KEYS, PURCHASES, CUTOFF, behaviour=viewed)
    changed = (before[list(BEHAVIOUR_FEATURES)] != after[list(BEHAVIOUR_FEATURES)]).any(axis=1)
    assert changed.tolist() == [True, False, False, True]  # (b, 1) itself, and item 1's view counts for a
    assert after.loc[3, "user_item_views_1d"] == 1 and after.loc[3, "user_item_days_since_view"] == 0.5


def test_behaviour_events_keep_views_carts_and_favourites_of_known_items_and_customers():
    interactions = pd.DataFrame({
        "user_id": ["a", "a", None, "b", "b"], "item_id": ["x", "y", "x", "z", "x"],
        "event_type": ["view", "purchase", "view", "cart", "favourite"],
        "occurred_at": pd.to_datetime(["2024-01-01"] * 5), "quantity": [2, 1, 1, 1, 1]})
    events = behaviour_events(interactions, np.array(["x", "y"]))
    assert events[["user_key", "item", "event_type", "quantity"]].values.tolist() == [
        ["a", 1, "view", 2.0], ["b", 1, "favourite", 1.0]]  # no purchase, no anonymous row, no unknown item
