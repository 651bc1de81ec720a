"""Events recorded live: keyed and shaped as the marts have them, and kept over new data only until it holds them."""

import types
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from orchestration.ingest.event_rules import Event, EventRules, check_event
from orchestration.registry.bundle import Bundle
from orchestration.serving.live import (
    LOG_FANIN,
    Customer,
    Recorded,
    RecordedLog,
    StoredEvents,
    Waiting,
    customer_history,
    merged,
    recorded_rows,
    unprocessed,
    with_pending,
)
from orchestration.store.privacy import pseudonymize, pseudonymize_session
from recmodels.event_table import EventTable
from recmodels.explain import behaviour_evidence, behaviour_evidence_by_user
from recmodels.sequences import token_histories

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
    waiting = Waiting()
    assert waiting.add(recorded) == {customer, session} and len(recorded.since(12)) == 1
    assert [len(waiting[customer].purchases), len(waiting[customer].behaviour), len(waiting[session])] == [1, 1, 1]


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


def _behaviour(rows):
    """behaviour_events rows of (user_key, item, minute, event_type)."""
    return pd.DataFrame({"user_key": [r[0] for r in rows], "item": np.array([r[1] for r in rows], np.int64),
                         "occurred_at": np.array([T + pd.Timedelta(minutes=r[2]) for r in rows], "datetime64[ns]"),
                         "event_type": [r[3] for r in rows], "quantity": 1.0})


def _purchases(rows):
    """purchase_events rows of (user_key, item, minute)."""
    return pd.DataFrame({"user_key": [r[0] for r in rows], "item": np.array([r[1] for r in rows], np.int64),
                         "occurred_at": np.array([T + pd.Timedelta(minutes=r[2]) for r in rows], "datetime64[ns]"),
                         "quantity": 1.0, "unit_price": 2.0, "basket_id": None})


def test_one_customers_evidence_by_hand_and_as_every_customers_pass_gives_it():
    behaviour = _behaviour([("u", 3, 5, "view"), ("u", 1, 2, "view"), ("u", 3, 1, "view"),  # viewed by time: 3 1 3
                            ("u", 2, 4, "cart"), ("u", 2, 1, "cart"),  # last cart 4, bought at 3: still open
                            ("u", 5, 2, "cart"),  # bought at 6, after its last cart: closed
                            ("u", 4, 9, "cart"), ("u", 7, 0, "favourite")])  # never bought: open
    purchases = _purchases([("u", 2, 3), ("u", 5, 6), ("u", 9, 1)])
    viewed, in_cart = behaviour_evidence(behaviour, purchases)
    assert viewed.tolist() == [3, 1, 3] and in_cart.tolist() == [2, 4]
    rng = np.random.default_rng(7)
    for _ in range(50):
        n, m = int(rng.integers(0, 30)), int(rng.integers(0, 10))
        behaviour = _behaviour([("u", int(rng.integers(1, 6)), int(rng.integers(0, 8)),
                                 str(rng.choice(["view", "cart", "favourite"]))) for _ in range(n)])
        purchases = _purchases([("u", int(rng.integers(1, 6)), int(rng.integers(0, 8))) for _ in range(m)])
        expected = behaviour_evidence_by_user(behaviour, purchases).get("u", (np.array([], np.int64),) * 2)
        for mine, theirs in zip(behaviour_evidence(behaviour, purchases), expected):
            np.testing.assert_array_equal(mine, theirs)


def test_one_customers_history_is_the_one_every_customers_pass_gives():
    n_items = 9
    rng = np.random.default_rng(11)
    for _ in range(50):
        behaviour = _behaviour([("u", int(rng.integers(1, 10)), int(rng.integers(0, 5)),
                                 str(rng.choice(["view", "cart", "favourite"]))) for _ in range(rng.integers(0, 12))])
        purchases = _purchases([("u", int(rng.integers(1, 10)), int(rng.integers(0, 5)))
                                for _ in range(rng.integers(0, 6))])
        columns = ["user_key", "item", "occurred_at", "event_type"]
        both = pd.concat([purchases.assign(event_type="purchase")[columns], behaviour[columns]], ignore_index=True)
        tokens = token_histories(both, n_items).get("u")
        mine = customer_history(EventTable.of(purchases), EventTable.of(behaviour), n_items, as_tokens=True)
        assert (mine is None) == (tokens is None)
        if tokens is not None:
            np.testing.assert_array_equal(mine, tokens)
        items = customer_history(EventTable.of(purchases), EventTable.of(behaviour), n_items, as_tokens=False)
        assert (items is None) == (len(purchases) == 0)
        if items is not None:
            assert items.tolist() == purchases["item"].tolist()


def test_merged_keeps_the_first_tables_rows_first_on_equal_times():
    first = EventTable.of(_purchases([("u", 1, 0), ("u", 2, 5)]))
    more = EventTable.of(_purchases([("u", 3, 5), ("u", 4, 1), ("u", 5, 0)]))
    assert merged(first, more)["item"].tolist() == [1, 5, 4, 2, 3]
    assert merged(first, more.take(np.array([], np.int64))) is first


def _bundle(sequence_behaviour: bool):
    config = types.SimpleNamespace(sequence_behaviour=sequence_behaviour)
    return types.SimpleNamespace(item_ids=BUNDLE.item_ids, recommender=types.SimpleNamespace(config=config),
                                 internal_ids=BUNDLE.internal_ids)


def _batch(rows, first_sequence):
    """``Recorded`` of (event_id, customer, item, event_type, minute)."""
    return recorded_rows(_frame([(e, user, None, item, kind, T + pd.Timedelta(minutes=minute), 1.0, 2.0)
                                 for e, user, item, kind, minute in rows]), KEY, BUNDLE, first_sequence)


@pytest.mark.parametrize("sequence_behaviour", [True, False])
def test_a_customer_built_from_waiting_events_in_batches_is_the_one_built_from_them_at_once(sequence_behaviour):
    # Many events of one customer in one batch, interleaved with another's, at equal and out-of-order times.
    first = _batch([("a1", "1", "A", "view", 3), ("b1", "2", "B", "purchase", 1), ("a2", "1", "B", "cart", 3),
                    ("a3", "1", "B", "purchase", 2), ("b2", "2", "A", "view", 4), ("a4", "1", "C", "view", 0)], 0)
    second = _batch([("a5", "1", "B", "cart", 5), ("b3", "2", "C", "cart", 1), ("a6", "1", "A", "purchase", 3)], 6)
    empty = Customer(EventTable.of(_purchases([])), EventTable.of(_behaviour([])), None, {}, T)
    bundle = _bundle(sequence_behaviour)
    customer = pseudonymize("1", KEY)
    in_two = Waiting()
    in_two.add(first)
    step = with_pending(empty, customer, in_two[customer], bundle, shop_has_behaviour=True)
    in_two = Waiting()
    in_two.add(second)
    step = with_pending(step, customer, in_two[customer], bundle, shop_has_behaviour=True)
    at_once = Waiting()
    assert at_once.add(Recorded.joined([first, second])) == {customer, pseudonymize("2", KEY)}
    whole = with_pending(empty, customer, at_once[customer], bundle, shop_has_behaviour=True)
    for built in (step, whole):  # purchases by time: B (2) at minute 2, A (1) at minute 3
        assert built.events["item"].tolist() == [2, 1] and built.as_of == T + pd.Timedelta(minutes=5, seconds=1)
    pd.testing.assert_frame_equal(step.events.frame(), whole.events.frame())
    pd.testing.assert_frame_equal(step.behaviour.frame(), whole.behaviour.frame())
    np.testing.assert_array_equal(step.history, whole.history)
    # Views by time: C at 0, A at 3; B's last cart (5) is after its purchase (2): open.
    assert step.evidence["viewed"].tolist() == [3, 1] and step.evidence["in_cart"].tolist() == [2]
    # Tokens item + (n_items + 1) * code (purchase 0, view 1, cart 2) by time, ties by token: view C at 0,
    # purchase B at 2, then at 3 purchase A, view A, cart B; cart B at 5.
    n = len(BUNDLE.item_ids) + 1
    expected = [3 + n, 2, 1, 1 + n, 2 + 2 * n, 2 + 2 * n] if sequence_behaviour else [2, 1]
    assert step.history.tolist() == expected


def test_a_retried_event_counts_once_whatever_its_type_and_the_log_joins_batches_as_they_pile_up():
    batch = _batch([("e1", "1", "A", "view", 0), ("e1", "1", "A", "purchase", 1), ("e2", "1", "B", "view", 2),
                    ("e3", "1", "C", "purchase", 3)], 0)
    kept = batch.without({"e2"}, None)
    assert [*kept.purchases["event_id"], *kept.behaviour["event_id"]] == ["e3", "e1"]
    assert len(batch.without(set(), None)) == 3 and batch.without({"x"}, frozenset()).purchases.shape[0] == 1
    log, batches = RecordedLog(), []
    for number in range(LOG_FANIN * 2 + 3):
        batches.append(_batch([(f"x{number}", "1", "A", "view" if number % 3 else "purchase", number)], number))
        log.append(batches[-1])
    assert len(log._parts) == 2 + 3  # two joined batches of LOG_FANIN, then the newest three
    pd.testing.assert_frame_equal(log.joined().behaviour, Recorded.joined(batches).behaviour)
    pd.testing.assert_frame_equal(log.joined().purchases, Recorded.joined(batches).purchases)
    assert log.since(30).behaviour["event_id"].tolist() == ["x31", "x32", "x34"]
    assert log.since(30).purchases["event_id"].tolist() == ["x30", "x33"]


def test_the_apis_checked_events_are_recorded_as_a_frame_of_them_is():
    rules, now = EventRules.from_project(), datetime(2024, 6, 1)
    posted = [{"event_id": "e1", "user_id": " 17850.0 ", "item_id": "B", "event_type": "buy",
               "timestamp": "2024-05-01T12:00:00+02:00", "quantity": 2, "price": 3.5, "session_id": "web-1"},
              {"event_id": "e2", "session_id": " web-1 ", "item_id": "A.0", "event_type": "click",
               "timestamp": "2024-05-01T10:00:00.123456"},
              {"event_id": "e3", "user_id": "7", "item_id": "Z", "event_type": "cart", "timestamp": "2024-05-01"},
              {"event_id": "e4", "user_id": 7, "item_id": "C", "event_type": "wishlist", "timestamp": "2024-05-01",
               "quantity": "1", "price": "0"}]
    events = [check_event(values, rules, now) for values in posted]
    assert all(isinstance(e, Event) for e in events)
    frame = pd.DataFrame({name: pd.Series([getattr(e, name) for e in events], dtype=object)
                          for name in ("event_id", "user_id", "session_id", "item_id", "event_type")}).assign(
        occurred_at=pd.to_datetime([e.occurred_at for e in events]),
        quantity=[1 if e.quantity is None else e.quantity for e in events],
        price=[np.nan if e.price is None else e.price for e in events])
    from_events, from_frame = recorded_rows(events, KEY, BUNDLE, 5), recorded_rows(frame, KEY, BUNDLE, 5)
    assert len(from_events) == 3 and from_events.purchases["event_id"].tolist() == ["e1"]
    pd.testing.assert_frame_equal(from_events.purchases, from_frame.purchases)
    pd.testing.assert_frame_equal(from_events.behaviour, from_frame.behaviour)
    for part in ("purchase_columns", "behaviour_columns"):
        for name, values in getattr(from_events, part).items():
            assert values.dtype == getattr(from_frame, part)[name].dtype, name


def test_stored_events_give_a_customers_rows_as_the_frame_holds_them():
    frame = pd.DataFrame({"user_key": ["u", "v", "u", "v"], "item": np.array([1, 2, 3, 4], np.int64),
                          "occurred_at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
                          "quantity": [1.0, 2.0, np.nan, 4.0], "unit_price": 2.0,
                          "basket_id": ["b1", None, "b2", "b1"]})
    stored = StoredEvents(frame)
    assert len(stored) == 4
    rows = stored.rows("u", np.array([2, 0]))
    expected = EventTable.of(frame.iloc[[2, 0]])
    assert rows.columns == expected.columns
    pd.testing.assert_frame_equal(rows.frame(), expected.frame())
    assert pd.isna(stored.rows("v", np.array([1]))["basket_id"][0])  # a missing basket, as the frame gives it
    assert len(stored.rows("w", np.array([], np.int64))) == 0
