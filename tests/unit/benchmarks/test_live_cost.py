"""The live-read benchmark records one event per customer, as the service takes recorded events."""

import pandas as pd

from benchmarks.live_cost import events_for
from orchestration.serving.live import RECORDED_COLUMNS


def test_one_view_or_purchase_per_customer_at_the_given_time_and_repeat_with_the_seed():
    customers, items = [f"c{n}" for n in range(200)], [f"i{n}" for n in range(30)]
    at = pd.Timestamp("2024-05-01 10:00")
    events = events_for(customers, items, at, "first", seed=3)
    assert tuple(events.columns) == RECORDED_COLUMNS
    assert events["user_id"].tolist() == customers and events["event_id"].is_unique
    assert set(events["event_type"]) == {"view", "purchase"} and set(events["item_id"]) <= set(items)
    assert 0 < (events["event_type"] == "purchase").sum() < 60 and (events["occurred_at"] == at).all()
    pd.testing.assert_frame_equal(events, events_for(customers, items, at, "first", seed=3))
