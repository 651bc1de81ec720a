"""The in-process events benchmark posts batches shaped as the serving benchmark's, each event one the API takes."""

from datetime import UTC, datetime

from benchmarks.events_cost import EVENT_MIX, batches
from orchestration.ingest.event_rules import Event, EventRules, check_event


def test_batches_hold_distinct_accepted_events_of_the_given_customers_and_items_and_repeat_with_the_seed():
    customers, items = [f"c{n}" for n in range(5)], [f"i{n}" for n in range(7)]
    bodies = batches(customers, items, 4, 25, seed=3)
    again = batches(customers, items, 4, 25, seed=3)
    assert [[e["event_id"] for e in b["events"]] for b in bodies] == [[e["event_id"] for e in b["events"]]
                                                                         for b in again]
    events = [event for body in bodies for event in body["events"]]
    assert len(events) == 100 and len({e["event_id"] for e in events}) == 100
    assert {e["user_id"] for e in events} <= set(customers) and {e["item_id"] for e in events} <= set(items)
    assert {e["event_type"] for e in events} <= set(EVENT_MIX)
    assert all((e.get("quantity") == 1) == (e["event_type"] == "purchase") for e in events)
    rules, now = EventRules.from_project(), datetime.now(UTC).replace(tzinfo=None)
    assert all(isinstance(check_event(e, rules, now), Event) for e in events)
