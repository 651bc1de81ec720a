"""The in-process session benchmark sends sessions shaped as the serving benchmark's."""

from benchmarks.session_cost import sessions


def test_sessions_hold_three_to_five_distinct_viewed_or_carted_items_and_repeat_with_the_seed():
    items = [f"i{n}" for n in range(20)]
    planned = sessions(items, 50)
    assert len(planned) == 50 and planned == sessions(items, 50)
    for events in planned:
        assert 3 <= len(events) <= 5 and len({item for item, _, _ in events}) == len(events)
        assert {kind for _, kind, _ in events} <= {"view", "cart"} and all(t is None for _, _, t in events)
