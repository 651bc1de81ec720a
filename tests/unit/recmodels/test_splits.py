import numpy as np
import pandas as pd
import pytest

from recmodels.sequences import SequenceConfig
from recmodels.splits import (
    SplitRule,
    SplitWindows,
    StoredSplit,
    leave_one_out,
    load_split,
    save_split,
    split_cutoffs,
    split_problem,
    temporal_split,
)


def _lists(arrays):
    return [a.tolist() for a in arrays]


def test_leave_one_out_targets_and_short_sequences():
    split = leave_one_out(
        [np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7, 8, 9])], keys=np.array(["a", "b", "c"])
    )
    assert split.n_items == 9
    assert _lists(split.validation.histories) == [[1, 2], [7]]
    assert _lists(split.validation.targets) == [[3], [8]]
    assert _lists(split.test.histories) == [[1, 2, 3], [7, 8]]
    assert _lists(split.test.targets) == [[4], [9]]
    assert split.test.keys.tolist() == ["a", "c"]
    # the 2-item sequence is never evaluated but is learned from whole
    assert _lists(split.train) == [[1, 2], [7], [5, 6]]
    assert _lists(split.train_for_test) == [[1, 2, 3], [7, 8], [5, 6]]


def _temporal_events():
    rows = [
        ("u1", "a", "2020-01-01"),
        ("u1", "b", "2020-01-05"),
        ("u1", "a", "2020-02-01"),  # exactly at the validation cut-off: a target, not history
        ("u1", "c", "2020-03-05"),
        ("u2", "c", "2020-02-15"),  # first purchase inside the validation window: not returning there
        ("u2", "d", "2020-03-10"),
        ("u2", "c", "2020-03-11"),  # repeat purchase: still a target
        ("u3", "a", "2020-01-02"),  # never comes back: never evaluated
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at"])


def test_temporal_split_by_hand():
    split = temporal_split(
        _temporal_events(),
        SequenceConfig(key="user"),
        test_cutoff="2020-03-01",
        validation_cutoff="2020-02-01",
    )
    a, b, c, d = 1, 2, 3, 4
    assert split.n_items == 4
    assert _lists(split.train) == [[a, b], [a]]
    assert split.validation.keys.tolist() == ["u1"]
    assert _lists(split.validation.histories) == [[a, b]]
    assert _lists(split.validation.targets) == [[a]]
    assert _lists(split.train_for_test) == [[a, b, a], [c], [a]]
    assert split.test.keys.tolist() == ["u1", "u2"]
    assert _lists(split.test.histories) == [[a, b, a], [c]]
    assert _lists(split.test.targets) == [[c], [c, d]]


def test_temporal_windows_are_half_open():
    split = temporal_split(
        _temporal_events(),
        SequenceConfig(key="user"),
        test_cutoff="2020-03-01",
        validation_cutoff="2020-01-03",
        test_end="2020-03-11",  # excludes u2's repeat of c
        validation_end="2020-02-01",  # excludes u1's a at 02-01
    )
    assert _lists(split.validation.targets) == [[2]]  # u1 bought b on 01-05
    assert _lists(split.test.targets) == [[3], [4]]


def test_temporal_histories_never_reach_the_cutoff():
    events = _temporal_events()
    split = temporal_split(
        events, SequenceConfig(key="user"), test_cutoff="2020-03-01", validation_cutoff="2020-02-01"
    )
    # Every history is a prefix made only of events before its cut-off: u1 has 2 such events before 02-01.
    assert sum(len(h) for h in split.validation.histories) == 2
    before_test = (pd.to_datetime(events["occurred_at"]) < "2020-03-01") & events["user_id"].isin(
        ["u1", "u2"]
    )
    assert sum(len(h) for h in split.test.histories) == int(before_test.sum())


def test_temporal_rejects_misordered_cutoffs():
    with pytest.raises(ValueError):
        temporal_split(
            _temporal_events(), SequenceConfig(), test_cutoff="2020-02-01", validation_cutoff="2020-03-01"
        )


def test_leave_one_out_cuts_timestamps_like_the_sequences():
    times = [np.array([1, 1, 2, 3]), np.array([5, 6]), np.array([7, 7, 7])]
    split = leave_one_out([np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7, 8, 9])], timestamps=times)
    assert _lists(split.train_timestamps) == [[1, 1], [7], [5, 6]]
    assert _lists(split.train_for_test_timestamps) == [[1, 1, 2], [7, 7], [5, 6]]
    assert leave_one_out([np.array([1, 2, 3])]).train_timestamps is None


def test_temporal_split_timestamps_align_with_training_sequences():
    split = temporal_split(_temporal_events(), SequenceConfig(key="user"), "2020-03-01", "2020-02-01")
    for sequences, timestamps, cutoff in (
        (split.train, split.train_timestamps, np.datetime64("2020-02-01")),
        (split.train_for_test, split.train_for_test_timestamps, np.datetime64("2020-03-01")),
    ):
        assert [len(s) for s in sequences] == [len(t) for t in timestamps]
        assert all((t < cutoff).all() for t in timestamps)
    # u1 before the test cut-off: a (01-01), b (01-05), a (02-01)
    assert split.train_for_test_timestamps[0].astype("datetime64[D]").astype(str).tolist() == [
        "2020-01-01", "2020-01-05", "2020-02-01"
    ]


def _month_events():
    rows = [("u1", "a", "2024-01-01"), ("u1", "b", "2024-01-05"), ("u1", "c", "2024-01-20"), ("u1", "a", "2024-01-29"),
            ("u2", "b", "2024-01-02"), ("u2", "c", "2024-01-03"), ("u2", "d", "2024-01-21"), ("u2", "b", "2024-01-30"),
            ("u3", "d", "2024-01-25")]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at"]).assign(occurred_at=lambda f: pd.to_datetime(f.occurred_at))


def test_cutoffs_count_whole_days_back_from_the_last_event():
    validation, test = split_cutoffs(pd.Timestamp("2024-01-30 17:45"), 5, 10)
    # The test window is Jan 26..30 (5 days, the last day included); validation the 10 days before it.
    assert (validation, test) == (pd.Timestamp("2024-01-16"), pd.Timestamp("2024-01-26"))


def test_too_few_events_name_the_cutoffs_and_counts():
    events = _month_events()
    validation_cutoff, test_cutoff = split_cutoffs(events["occurred_at"].max(), 20, 20)
    split = temporal_split(events, SequenceConfig(), test_cutoff, validation_cutoff)
    message = split_problem(split, len(events), events.occurred_at.min(), events.occurred_at.max(), validation_cutoff, test_cutoff)
    assert "validation cut-off 2023-12-22, test cut-off 2024-01-11" in message
    assert "0 training sequences with 2+ items" in message
    shorter_validation, shorter_test = split_cutoffs(events["occurred_at"].max(), 5, 10)
    enough = temporal_split(events, SequenceConfig(), shorter_test, shorter_validation)
    assert split_problem(enough, 9, None, None, validation_cutoff, test_cutoff) is None


@pytest.mark.parametrize("days", [0, -1])
def test_cutoffs_need_positive_windows(days):
    with pytest.raises(ValueError):
        split_cutoffs(pd.Timestamp("2024-01-30"), days, 1)


def test_default_windows_are_thirty_days_each():
    assert SplitWindows() == SplitWindows(test_days=30, validation_days=30)


def _stored():
    events = _month_events()
    validation_cutoff, test_cutoff = split_cutoffs(events["occurred_at"].max(), 5, 10)
    split = temporal_split(events, SequenceConfig(), test_cutoff, validation_cutoff)
    return StoredSplit(split, split.train_timestamps, split.train_for_test_timestamps, {"note": "x"})


def test_split_round_trips_without_pickles(tmp_path):
    stored = _stored()
    digest = save_split(stored, tmp_path / "split.npz")
    loaded = load_split(tmp_path / "split.npz")
    assert loaded.content_hash == digest
    assert save_split(loaded, tmp_path / "again.npz") == digest  # same content, same hash, whenever written
    for before, after in ((stored.split.train, loaded.split.train), (stored.split.test.targets, loaded.split.test.targets),
                          (stored.train_for_test_times, loaded.train_for_test_times)):
        assert len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))
    assert list(loaded.split.test.keys) == ["u1", "u2"] and list(loaded.split.item_ids) == ["a", "b", "c", "d"]
    assert [len(t) for t in loaded.train_times] == [len(s) for s in loaded.split.train]
    assert loaded.info == {"note": "x"}


# ---- windows chosen from the data


def _log(purchases):
    """(customer, day) pairs -> events with one basket per purchase."""
    start = pd.Timestamp("2024-01-01")
    frame = pd.DataFrame(purchases, columns=["user_id", "day"])
    return frame.assign(occurred_at=start + pd.to_timedelta(frame["day"], unit="D") + pd.Timedelta(hours=12),
                        basket_id=[f"b{i}" for i in range(len(frame))])


def test_a_dense_shop_keeps_30_day_windows():
    from recmodels.splits import choose_windows

    # 600 customers buying every 10 days for 120 days: every customer returns in each window.
    choice = choose_windows(_log([(c, c % 10 + 10 * j) for c in range(600) for j in range(12)]))
    assert (choice.test_days, choice.validation_days, choice.enough) == (30, 30, True)
    assert (choice.test_customers, choice.validation_customers) == (600, 600)
    assert choice.required_customers == 120  # 20% of 600 repeat customers, above the floor of 100


def test_a_sparse_shop_grows_its_windows_until_they_hold_enough_customers():
    from recmodels.splits import choose_windows

    # 200 customers, one purchase every 100 days at day c % 100 + 100 j over 800 days. A window of N days at the
    # end holds the customers whose residue falls in it: 2 N of them.
    choice = choose_windows(_log([(c, c % 100 + 100 * j) for c in range(200) for j in range(8)]))
    assert choice.required_customers == 100  # the floor: 20% of 200 is 40
    assert [t[:2] for t in choice.tried] == [(30, 60), (45, 90), (60, 120)]
    assert (choice.test_days, choice.test_customers, choice.validation_customers, choice.enough) == (60, 120, 120, True)


def test_a_small_shop_takes_the_windows_with_the_most_customers_and_says_so():
    from recmodels.splits import choose_windows

    choice = choose_windows(_log([(c, c % 10 + 10 * j) for c in range(50) for j in range(36)]))
    assert (choice.test_days, choice.test_customers, choice.enough) == (30, 50, False)
    assert "fewer than the 100 the rule asks for" in choice.reason


def test_one_off_buyers_are_too_small_to_evaluate_reliably_and_are_told_so():
    from recmodels.splits import choose_windows

    once = [(c, c % 300) for c in range(1000)]
    again = [(1000 + c, d) for c in range(20) for d in (c, 150 + c, 280 + c % 19)]
    choice = choose_windows(_log(once + again))
    # No window holds the 20 who return; held out by last basket, all 20 are evaluated, still too few.
    assert (choice.rule, choice.test_customers, choice.validation_customers, choice.enough) == (
        "leave-last-basket-out", 20, 20, False)
    assert "Too few to evaluate reliably: 30 make an evaluation" in choice.reason
    windows_only = choose_windows(_log(once + again), SplitRule(leave_last_basket_out=False))
    assert not windows_only.enough and windows_only.test_customers < 30
    assert windows_only.reason.startswith("Too few returning customers to evaluate reliably: 20 customers bought more")


def test_customers_who_rarely_return_within_a_window_are_held_out_by_their_last_basket():
    from recmodels.splits import choose_windows

    # 400 customers, each active for 20 days (baskets on days 5c/2, +10, +20) across ~1,020 days: any window at
    # the end catches only the few whose baskets straddle its cut-off, while every customer has three baskets.
    choice = choose_windows(_log([(c, int(2.5 * c) + d) for c in range(400) for d in (0, 10, 20)]))
    assert choice.rule == "leave-last-basket-out" and choice.enough
    assert (choice.test_customers, choice.validation_customers) == (400, 400)
    assert max(min(t[1:]) for t in choice.tried) < 100  # no window length reached the rule's 100
    assert (choice.test_days, choice.validation_days) == (None, None)


def test_a_log_of_a_few_weeks_gets_the_longest_short_windows_that_fit():
    from recmodels.splits import choose_windows

    # 58 days of 300 buyers every third day: two 30-day windows would take more than half the log; 14 days fit.
    choice = choose_windows(_log([(c, d) for c in range(300) for d in range(0, 60, 3)]))
    assert (choice.test_days, choice.enough, [t[0] for t in choice.tried]) == (14, True, [14])


# ---- leave-last-basket-out


def _baskets():
    """a: baskets on Jan 1 (x, y), Jan 6 (z), Jan 10 (x); b: Jan 2 (y), Jan 4 (z); c: one basket (x)."""
    t = pd.Timestamp("2024-01-01")
    return pd.DataFrame({
        "user_id": ["a", "a", "a", "a", "b", "b", "c"], "item_id": ["x", "y", "z", "x", "y", "z", "x"],
        "occurred_at": [t, t, t + pd.Timedelta(days=5), t + pd.Timedelta(days=9), t + pd.Timedelta(days=1),
                        t + pd.Timedelta(days=3), t],
        "basket_id": ["1", "1", "2", "3", "4", "5", "6"]})


def test_leave_last_basket_out_tests_the_last_basket_and_validates_the_one_before():
    from recmodels.splits import leave_last_basket_out

    split = leave_last_basket_out(_baskets(), SequenceConfig(seed=1))
    x, y, z = 1, 2, 3
    assert list(split.test.keys) == ["a", "b"] and list(split.validation.keys) == ["a"]
    assert [t.tolist() for t in split.test.targets] == [[x], [z]]
    assert [sorted(h.tolist()) for h in split.test.histories] == [[x, y, z], [y]]
    assert [t.tolist() for t in split.validation.targets] == [[z]] and sorted(split.validation.histories[0]) == [x, y]
    assert list(split.test.cutoffs) == [np.datetime64("2024-01-10", "ns"), np.datetime64("2024-01-04", "ns")]
    assert list(split.validation.cutoffs) == [np.datetime64("2024-01-06", "ns")]
    # Validation-phase training stops before each customer's first held-out basket; c trains whole.
    assert [sorted(s.tolist()) for s in split.train] == [[x, y], [y], [x]]
    assert [sorted(s.tolist()) for s in split.train_for_test] == [[x, y, z], [y], [x]]


def test_without_basket_ids_each_distinct_time_is_a_basket(tmp_path):
    from recmodels.splits import (
        StoredSplit,
        last_basket_cutoffs,
        leave_last_basket_out,
        load_split,
        save_split,
    )

    events = _baskets().drop(columns="basket_id")
    cutoffs = last_basket_cutoffs(events)
    assert cutoffs["baskets"].to_dict() == {"a": 3, "b": 2, "c": 1}
    split = leave_last_basket_out(events, SequenceConfig())
    stored = StoredSplit(split, split.train_timestamps, split.train_for_test_timestamps, {})
    save_split(stored, tmp_path / "split.npz")
    loaded = load_split(tmp_path / "split.npz")
    assert list(loaded.split.test.cutoffs) == list(split.test.cutoffs)
    assert list(loaded.cutoff("test")) == list(split.test.cutoffs)
