"""compute_user_features equals compute_features + the item table, column for column and bit for bit."""

import numpy as np
import pandas as pd
import pytest

from recmodels.ranking import compute_features
from recmodels.ranking.behaviour import BEHAVIOURS
from recmodels.ranking.group_sums import adjacent, group_median, group_sum
from recmodels.ranking.user_features import compute_user_features
from recmodels.recommender import ITEM_LEVEL_FEATURES, _with_item_features, item_feature_table

CUTOFF = pd.Timestamp("2024-03-01")


def _times(rng, n):
    """Times on a coarse grid around the cut-off, so that equal times are common, some at or after it."""
    hours = rng.choice([rng.integers(-100 * 24, 2 * 24), rng.integers(-3, 1) * 24], n).astype(np.int64)
    jitter = rng.choice([0, 0, 0, 30], n)  # some minutes, for the 1-hour window
    return CUTOFF + pd.to_timedelta(hours, unit="h") + pd.to_timedelta(jitter, unit="min")


def _purchases(rng, users, n_items, n):
    quantity = rng.choice([rng.integers(-2, 6), 1.5, 0.25, np.nan, 12.0], n).astype(float)
    quantity = np.where(rng.random(n) < 0.6, rng.integers(1, 5, n), quantity)
    price = rng.choice([np.nan, 0.0, 0.85, 1.25, 2.55, 7.1, 0.1], n)
    if rng.random() < 0.5:  # a shop without missing values, where pandas may add without compensation
        quantity, price = np.nan_to_num(quantity, nan=3.0), np.nan_to_num(price, nan=4.95)
    events = pd.DataFrame({
        "user_key": rng.choice(users, n), "item": rng.integers(1, n_items + 1, n), "occurred_at": _times(rng, n),
        "quantity": quantity, "unit_price": price,
    })
    if rng.random() < 0.8:  # else orders are days
        baskets = rng.integers(0, max(n // 3, 1), n).astype(str).astype(object)
        baskets[rng.random(n) < 0.15] = None
        baskets[rng.random(n) < 0.05] = np.nan
        events["basket_id"] = baskets
    return events


def _behaviour(rng, users, n_items, n):
    quantity = rng.choice([np.nan, 1.0, 2.0, 0.5, 0.0, 3.25], n)
    if rng.random() < 0.5:
        quantity = np.where(np.isnan(quantity), np.nan, np.abs(np.round(quantity)))
    return pd.DataFrame({"user_key": rng.choice(users, n), "item": rng.integers(1, n_items + 1, n),
                         "occurred_at": _times(rng, n), "event_type": rng.choice(BEHAVIOURS, n),
                         "quantity": quantity})


def _candidates(rng, n_rows, n_items):
    rows, items = [], []
    for row in range(n_rows):
        chosen = np.sort(rng.choice(np.arange(1, n_items + 1), rng.integers(1, n_items + 1), replace=False))
        rows.append(np.full(len(chosen), row))
        items.append(chosen)
    items = np.concatenate(items)
    return pd.DataFrame({"row": np.concatenate(rows), "item": items, "popularity_score": rng.random(len(items)),
                         "popularity_rank": rng.integers(1, 50, len(items))})


def _both(candidates, keys, events, cutoff, table, item_text=None, behaviour=None, recent_items=3):
    expected = _with_item_features(
        compute_features(candidates, keys, events, cutoff, item_text=item_text, recent_items=recent_items,
                         behaviour=behaviour), table, keys, events, cutoff)
    fast = compute_user_features(candidates, keys, events, cutoff, table, ITEM_LEVEL_FEATURES, item_text=item_text,
                                 recent_items=recent_items, behaviour=behaviour)
    return fast, expected


def _shop(seed):
    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(2, 14))
    everybody = np.array([f"u{i}" for i in range(8)], dtype=object)
    events = _purchases(rng, everybody, n_items, int(rng.integers(0, 80)))
    behaviour = _behaviour(rng, everybody, n_items, int(rng.integers(0, 40))) if rng.random() < 0.6 else None
    keys = rng.choice(np.append(everybody, ["nobody", "ghost"]), int(rng.integers(1, 5)), replace=False)
    table = item_feature_table(events, CUTOFF, n_items, behaviour)
    own = events[events["user_key"].isin(keys)] if rng.random() < 0.7 else events  # others' events change no row
    seen = behaviour[behaviour["user_key"].isin(keys)] if behaviour is not None else None
    # pandas adds a group's values another way where its rows are adjacent (as serving's are, one customer after
    # another): shops in either order, and sorted further, so that whole pairs or orders are adjacent too.
    by = [[], ["user_key"], ["user_key", "item"], ["user_key", "item", "occurred_at"]][int(rng.integers(0, 4))]
    if by:
        own = own.sort_values(by, kind="stable")
        seen = seen.sort_values(by, kind="stable") if seen is not None else None
    item_text = None
    if rng.random() < 0.7:
        item_text = rng.normal(size=(n_items + 1, 5)).astype(np.float32)
        item_text[rng.random(n_items + 1) < 0.3] = 0.0  # items without text
    candidates = _candidates(rng, len(keys), n_items)
    return candidates, keys.astype(object), own, table, item_text, seen, int(rng.integers(1, 5))


@pytest.mark.parametrize("seed", range(60))  # every summing path pandas takes is among them
def test_equals_the_pandas_path_on_random_shops(seed):
    candidates, keys, own, table, item_text, seen, recent = _shop(seed)
    fast, expected = _both(candidates, keys, own, CUTOFF, table, item_text, seen, recent)
    pd.testing.assert_frame_equal(fast, expected, check_exact=True)


def _events(rows):
    return pd.DataFrame(rows, columns=["user_key", "item", "occurred_at", "quantity", "unit_price", "basket_id"])


@pytest.mark.parametrize("events", [
    _events([]),  # nobody has bought anything
    _events([("a", 1, "2024-02-01", 2.0, 1.5, "b1")]),  # one event
    _events([("a", 1, "2024-02-01", 2.0, 1.5, "b1"), ("a", 2, "2024-02-01", 1.0, 3.0, "b2"),
             ("a", 1, "2024-02-01", 3.0, 1.5, "b2")]),  # two orders the same instant
    _events([("a", 1, "2024-02-01", 2.0, 1.5, None), ("a", 1, "2024-02-03", 1.0, np.nan, None),
             ("a", 2, "2024-03-01", 5.0, 1.0, "late")]),  # missing baskets: one order; one at the cut-off
])
def test_limit_cases_equal_the_pandas_path(events):
    events = events.astype({"occurred_at": "datetime64[ns]", "item": np.int64, "quantity": float,
                            "unit_price": float, "basket_id": object})
    candidates = pd.DataFrame({"row": [0, 0, 1], "item": [1, 2, 1]})
    keys = np.array(["a", "nobody"], dtype=object)
    table = item_feature_table(events, CUTOFF, 3)
    fast, expected = _both(candidates, keys, events, CUTOFF, table, np.eye(4, dtype=np.float32))
    pd.testing.assert_frame_equal(fast, expected, check_exact=True)


def test_other_inputs_are_left_to_the_general_path():
    candidates = pd.DataFrame({"row": [0], "item": [1]})
    events = _events([("a", 1, "2024-02-01", 2.0, 1.5, "b1")]).astype({"occurred_at": "datetime64[ns]"})
    table = item_feature_table(events, CUTOFF, 2)
    keys = np.array(["a"], dtype=object)
    assert compute_user_features(candidates, keys, events, np.array([CUTOFF]), table, ITEM_LEVEL_FEATURES) is None
    assert compute_user_features(candidates, keys, events, CUTOFF, table.drop(columns="item_trend"),
                                 ITEM_LEVEL_FEATURES) is None
    assert compute_user_features(candidates, keys, events, CUTOFF, table, ITEM_LEVEL_FEATURES,
                                 item_text=np.ones((1, 2), np.float32)) is None  # no text row for item 1
    named_like_a_feature = candidates.assign(user_events=1.0)
    assert compute_user_features(named_like_a_feature, keys, events, CUTOFF, table, ITEM_LEVEL_FEATURES) is None
    infinite = events.assign(quantity=np.inf)
    assert compute_user_features(candidates, keys, infinite, CUTOFF, table, ITEM_LEVEL_FEATURES) is None


def test_group_sum_adds_as_pandas_and_group_median_takes_its_median():
    rng = np.random.default_rng(0)
    for size, n_groups in ((500, 1), (3000, 400), (50, 7)):  # the per-group and the per-position loops
        for nan, grouped in ((np.nan, False), (1.0, False), (1.0, True)):  # pandas' Kahan path and its reduceat path
            codes = rng.integers(0, n_groups, size)
            codes = np.sort(codes) if grouped else codes
            values = rng.random(size) * rng.choice([1.0, 1e6, nan], size)
            grouped_by = pd.Series(values).groupby(codes)
            expected_sum = grouped_by.sum().reindex(range(n_groups), fill_value=0.0).to_numpy()
            expected_median = grouped_by.median().reindex(range(n_groups)).to_numpy()
            np.testing.assert_array_equal(group_sum(codes, values, n_groups, adjacent(codes)), expected_sum)
            np.testing.assert_array_equal(group_median(codes, values, n_groups), expected_median)


@pytest.mark.parametrize("behaviour", [False, True])
def test_two_stage_rank_is_unchanged(behaviour, monkeypatch):
    from recmodels.ranking import LambdaRanker, RankerConfig
    from recmodels.recommender import TwoStageConfig, TwoStageRecommender

    rng = np.random.default_rng(11)
    n_items = 12
    users = np.array(["a", "b", "c", "d"], dtype=object)
    events = _purchases(rng, users, n_items, 150)
    views = _behaviour(rng, users, n_items, 60) if behaviour else None
    text = rng.normal(size=(n_items + 1, 6)).astype(np.float32)
    candidates = _candidates(rng, 30, n_items)
    table = item_feature_table(events, CUTOFF, n_items, views)
    keys = rng.choice(users, 30)
    train = _with_item_features(compute_features(candidates, keys, events, CUTOFF, item_text=text, behaviour=views),
                                table, keys, events, CUTOFF)
    names = [c for c in train.columns if c not in ("row", "item", "popularity_rank", "features_as_of")]
    ranker = LambdaRanker(RankerConfig(n_estimators=30, min_data_in_leaf=2)).fit(
        train, rng.integers(0, 2, len(train)).astype(np.int8), train["row"].to_numpy(), names)

    def popularity(histories):
        scores = np.tile(rng.random(n_items + 1).astype(np.float32), (len(histories), 1))
        scores[:, 0] = -np.inf
        return scores

    recommender = TwoStageRecommender({"popularity": popularity}, ranker,
                                      TwoStageConfig(n_candidates=8, recent_items=4, behaviour=behaviour),
                                      item_text=text)
    histories = [np.array([1, 2]), np.array([3]), np.array([], np.int64)]
    asked = np.array(["a", "c", "nobody"], dtype=object)
    own = events[events["user_key"].isin(asked)]
    mine = views[views["user_key"].isin(asked)] if behaviour else None

    def ranked():
        state = rng.bit_generator.state
        result = recommender.rank(histories, asked, own, CUTOFF, item_features=table, behaviour=mine)
        rng.bit_generator.state = state  # the same source scores for both paths
        return result

    import recmodels.recommender as module

    answers = []
    monkeypatch.setattr(module, "compute_user_features",
                        lambda *args, **kwargs: answers.append(compute_user_features(*args, **kwargs)) or answers[-1])
    fast = ranked()
    assert answers and answers[0] is not None  # the numpy path ranked it
    monkeypatch.setattr(module, "compute_user_features", lambda *args, **kwargs: None)
    pd.testing.assert_frame_equal(fast, ranked(), check_exact=True)
