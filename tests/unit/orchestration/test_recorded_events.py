"""Events recorded live: keyed and shaped as the marts have them, and kept over new data only until it holds them."""

import types

import numpy as np
import pandas as pd
import pytest

from orchestration.registry.bundle import Bundle
from orchestration.serving.live import recorded_rows, unprocessed
from orchestration.store.privacy import pseudonymize, pseudonymize_session

KEY = "unit-test-key"
BUNDLE = Bundle(recommender=None, item_ids=np.array(["A", "B", "C"]), spec={}, folder=None, models={})  # ids 1..3


def _frame(rows):
    columns = ["event_id", "user_id", "session_id", "item_id", "event_type", "occurred_at", "quantity", "price"]
    return pd.DataFrame(rows, columns=columns)


T = pd.Timestamp("2024-05-01 10:00")


def test_events_are_keyed_and_shaped_as_the_marts_have_them():
    recorded = recorded_rows(_frame([
        ("e1", " 17850.0 ", "web-1", "B", "purchase", T, 2.0, 3.5),  # a customer's id wins over the session
        ("e2", None, " web-1 ", "A", "view", T, None, None),  # anonymous: the session's pseudonym, 1 view
        ("e3", "", None, "A", "view", T, 1.0, None),  # neither id: left out, as dbt quarantines it
        ("e4", "17850", None, "Z", "cart", T, 1.0, None),  # an item the bundle does not know
        ("e5", "17850", None, "C", "favourite", T + pd.Timedelta(minutes=1), 1.0, None),
    ]), KEY, BUNDLE, first_sequence=10)
    customer, session = pseudonymize("17850", KEY), pseudonymize_session("web-1", KEY)
    purchases = recorded.purchases
    assert purchases[["user_key", "item", "quantity", "unit_price", "basket_id", "event_id", "recorded"]].values.tolist() \
        == [[customer, 2, 2.0, 3.5, "web-1", "e1", 10]]
    behaviour = recorded.behaviour
    assert behaviour[["user_key", "item", "event_type", "quantity", "event_id", "recorded"]].values.tolist() == [
        [session, 1, "view", 1.0, "e2", 11], [customer, 3, "favourite", 1.0, "e5", 14]]
    assert recorded.keys == {customer, session} and recorded.newest == T + pd.Timedelta(minutes=1)
    assert len(recorded.of(customer)) == 2 and len(recorded.since(12)) == 1


def test_unknown_event_types_and_missing_columns_are_refused():
    with pytest.raises(ValueError, match="'click'"):
        recorded_rows(_frame([("e1", "1", None, "A", "click", T, 1.0, None)]), KEY, BUNDLE, 0)
    with pytest.raises(ValueError, match="price"):
        recorded_rows(_frame([("e1", "1", None, "A", "view", T, 1.0, None)]).drop(columns="price"), KEY, BUNDLE, 0)


def test_tz_aware_times_become_naive_utc():
    recorded = recorded_rows(_frame([("e1", "1", None, "A", "view", pd.Timestamp("2024-05-01 12:00+02:00"), 1.0,
                                      None)]), KEY, BUNDLE, 0)
    assert recorded.behaviour["occurred_at"].tolist() == [T]


def _recorded():
    return recorded_rows(_frame([(f"e{i}", "1", None, "A", "purchase" if i % 2 else "view",
                                  T + pd.Timedelta(minutes=i), 1.0, 2.0) for i in range(1, 6)]), KEY, BUNDLE, 1)


def test_new_data_drops_what_it_holds_and_everything_recorded_before():
    # e3 is in the marts: e1 and e2, recorded before it, were processed too (merged into a view, or rejected).
    data = types.SimpleNamespace(event_ids=frozenset({"e3", "elsewhere"}), newest=T)
    kept = unprocessed(_recorded(), data)
    assert sorted([*kept.purchases["event_id"], *kept.behaviour["event_id"]]) == ["e4", "e5"]
    nothing_yet = unprocessed(_recorded(), types.SimpleNamespace(event_ids=frozenset(), newest=T))
    assert len(nothing_yet) == 5


def test_without_event_ids_in_the_marts_events_after_the_newest_are_kept():
    data = types.SimpleNamespace(event_ids=None, newest=T + pd.Timedelta(minutes=3))
    kept = unprocessed(_recorded(), data)
    assert sorted([*kept.purchases["event_id"], *kept.behaviour["event_id"]]) == ["e4", "e5"]
