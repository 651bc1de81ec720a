"""The two-stage recommender: history filtering, source checks and ranking by the ranker's scores."""

import numpy as np
import pandas as pd
import pytest

from recmodels.metrics import topk_metrics
from recmodels.ranking import LambdaRanker, RankerConfig
from recmodels.recommender import TwoStageConfig, TwoStageRecommender, without_history_items


def test_without_history_items_drops_only_that_rows_history():
    candidates = pd.DataFrame({"row": [0, 0, 1, 1], "item": [1, 2, 1, 3], "x": [1.0, 2.0, 3.0, 4.0]})
    kept = without_history_items(candidates, [np.array([2, 2]), np.array([3])])
    assert kept[["row", "item"]].values.tolist() == [[0, 1], [1, 1]] and kept["x"].tolist() == [1.0, 3.0]


def test_topk_metrics_counts_pad_as_a_miss_and_not_as_coverage():
    topk = np.array([[3, 0], [0, 0]])
    metrics = topk_metrics(topk, [np.array([3]), np.array([1])], n_items=4, ks=(2,))
    assert metrics["recall@2"] == 0.5 and metrics["ndcg@2"] == 0.5 and metrics["coverage@2"] == 0.25


def _fitted_ranker():
    """A ranker that learned 'higher popularity score first' from 40 rows of 5 candidates."""
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(40), 5)
    score = rng.random(200)
    labels = np.zeros(200, np.int8)
    for row in range(40):
        labels[row * 5 + np.argmax(score[row * 5:row * 5 + 5])] = 1
    rank = pd.Series(-score).groupby(rows).rank(method="first").to_numpy()
    features = pd.DataFrame({"popularity_score": score, "popularity_rank": rank})
    return LambdaRanker(RankerConfig(n_estimators=20, min_data_in_leaf=1)).fit(
        features, labels, rows, ["popularity_score", "popularity_rank"])


def test_two_stage_ranks_candidates_by_the_ranker():
    ranker = _fitted_ranker()

    def popularity(histories):
        scores = np.tile(np.array([-np.inf, 0.1, 0.9, 0.5, 0.3], np.float32), (len(histories), 1))
        return scores

    recommender = TwoStageRecommender({"popularity": popularity}, ranker, TwoStageConfig(n_candidates=3))
    events = pd.DataFrame({"user_key": ["u"], "item": [1], "occurred_at": [pd.Timestamp("2024-01-01")],
                           "quantity": [1.0], "unit_price": [2.0]})
    ranked = recommender.rank([np.array([1]), np.array([2])], np.array(["u", "v"]), events, "2024-02-01")
    assert sorted(ranked.groupby("row")["item"].agg(list).iloc[0]) == [2, 3, 4]  # the 3 most popular
    assert recommender.topk(ranked, 2, 3).tolist() == [[2, 3, 4], [2, 3, 4]]
    excluded = recommender.rank([np.array([2])], np.array(["u"]), events, "2024-02-01", exclude_history=True)
    assert recommender.topk(excluded, 1, 3).tolist() == [[3, 4, 0]]


def test_two_stage_refuses_a_ranker_reading_a_missing_source():
    with pytest.raises(ValueError, match="popularity_score"):
        TwoStageRecommender({"item-knn": lambda h: None}, _fitted_ranker())


def test_item_feature_table_with_one_customers_events_equals_the_full_computation():
    from recmodels.ranking import compute_features
    from recmodels.recommender import item_feature_table

    rng = np.random.default_rng(3)
    n = 400
    events = pd.DataFrame({
        "user_key": rng.choice(["a", "b", "c", "d", "e"], n), "item": rng.integers(1, 13, n),
        "occurred_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n), unit="h"),
        "quantity": rng.integers(1, 5, n).astype(float), "unit_price": rng.choice([0.0, 1.5, 2.0, 7.25], n),
        "basket_id": rng.integers(0, 60, n).astype(str),
    })
    cutoff = pd.Timestamp("2024-03-01")
    candidates = pd.DataFrame({"row": np.repeat([0, 1], 12), "item": np.tile(np.arange(1, 13), 2)})
    keys = np.array(["b", "zz"], dtype=object)  # a customer with events and one without
    full = compute_features(candidates, keys, events, cutoff)
    table = item_feature_table(events, cutoff, 12)
    from recmodels.recommender import _with_item_features

    own = events[events["user_key"].isin(keys)]
    fast = _with_item_features(compute_features(candidates, keys, own, cutoff), table, keys, own, cutoff)
    columns = [c for c in full.columns if c != "features_as_of"]  # as-of reads the item's last event: global
    pd.testing.assert_frame_equal(fast[columns], full[columns])



def _random_purchases(rng: np.random.Generator, n_items: int, n: int = 300) -> pd.DataFrame:
    """``n`` purchase events of customers a, b and c over 60 days, some without a price."""
    return pd.DataFrame({
        "user_key": rng.choice(["a", "b", "c"], n), "item": rng.integers(1, n_items + 1, n),
        "occurred_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60 * 24, n), unit="h"),
        "quantity": rng.integers(1, 4, n).astype(float), "unit_price": rng.choice([np.nan, 1.5, 2.0, 7.25], n),
        "basket_id": rng.integers(0, 40, n).astype(str),
    })

@pytest.mark.parametrize("behaviour", [False, True])
def test_rows_without_events_look_their_features_up_exactly(behaviour):
    from recmodels.ranking.behaviour import behaviour_events
    from recmodels.recommender import item_feature_table

    rng = np.random.default_rng(5)
    n_items = 9
    events = _random_purchases(rng, n_items)
    views = behaviour_events(pd.DataFrame({
        "user_id": ["a", "a", "c", "d"], "item_id": ["3", "4", "4", "5"], "event_type": ["view", "cart", "view", "view"],
        "occurred_at": pd.to_datetime(["2024-02-01", "2024-02-02", "2024-02-03", "2024-02-04"]),
        "quantity": [1.0, 1.0, 1.0, 1.0]}), np.array([str(i) for i in range(1, n_items + 1)]))

    def learned(histories):  # a history-dependent source: its last item first, then by id
        scores = np.tile(-np.arange(n_items + 1, dtype=np.float32), (len(histories), 1))
        for row, history in enumerate(histories):
            scores[row, history[-1:]] = 100.0
        scores[:, 0] = -np.inf
        return scores

    text = rng.normal(size=(n_items + 1, 4)).astype(np.float32)
    recommender = TwoStageRecommender({"popularity": learned}, _fitted_ranker(),
                                      TwoStageConfig(n_candidates=6, behaviour=behaviour), item_text=text)
    cutoff = pd.Timestamp("2024-03-01")
    table = item_feature_table(events, cutoff, n_items, views if behaviour else None)
    blank = recommender.blank_features(table, cutoff)
    pd.testing.assert_frame_equal(blank, recommender.blank_features(table, pd.Timestamp("2030-01-01")))
    keys = np.array(["a", "nobody", "b", "d", "also-nobody"], dtype=object)  # d only viewed
    histories = [np.array([1, 2]), np.array([3]), np.array([4]), np.array([5]), np.array([], np.int64)]
    own = events[events["user_key"].isin(keys)]
    mine = views[views["user_key"].isin(keys)]
    computed = recommender.rank(histories, keys, own, cutoff, item_features=table, behaviour=mine)
    looked_up = recommender.rank(histories, keys, own, cutoff, item_features=table, behaviour=mine,
                                 blank_features=blank)
    columns = [c for c in computed.columns if c != "features_as_of"]
    pd.testing.assert_frame_equal(looked_up[columns], computed[columns])
    assert looked_up.loc[looked_up["row"].isin([1, 4]), "features_as_of"].isna().all()


def test_two_stage_config_from_a_stored_spec_and_its_defaults():
    from recmodels.ranking import DEFAULT_N_CANDIDATES, DEFAULT_RECENT_ITEMS, generate_candidates

    spec = {"n_candidates": 7, "recent_items": 3, "split_hash": "ignored"}
    assert TwoStageConfig.from_spec(spec) == TwoStageConfig(n_candidates=7, recent_items=3)
    assert TwoStageConfig() == TwoStageConfig(DEFAULT_N_CANDIDATES, DEFAULT_RECENT_ITEMS)
    assert generate_candidates.__defaults__[0] == TwoStageConfig.n_candidates


def _blank_recommender(serves="ranker"):
    """(recommender whose ranker reads sources and blank features, its blank features, item-level table, cut-off)
    on a small random shop; every source history-dependent or not."""
    from recmodels.recommender import RANKER, item_feature_table

    rng = np.random.default_rng(11)
    n_items = 12
    events = _random_purchases(rng, n_items)

    def learned(histories):  # its history's items first, then by id
        scores = np.tile(-np.arange(n_items + 1, dtype=np.float32), (len(histories), 1))
        for row, history in enumerate(histories):
            scores[row, history] = 50.0 + np.arange(len(history))
        scores[:, 0] = -np.inf
        return scores

    popular = np.r_[-np.inf, rng.random(n_items)].astype(np.float32)
    sources = {"learned": learned, "popularity": lambda histories: np.tile(popular, (len(histories), 1))}
    text = rng.normal(size=(n_items + 1, 4)).astype(np.float32)
    config = TwoStageConfig(n_candidates=7)
    cutoff = pd.Timestamp("2024-03-01")
    table = item_feature_table(events, cutoff, n_items)
    draft = TwoStageRecommender(sources, _sources_ranker(), config, item_text=text)
    blank = draft.blank_features(table, cutoff)
    histories = [rng.integers(1, n_items + 1, size=int(rng.integers(1, 4))) for _ in range(60)]
    nobody = np.array([f"n{i}" for i in range(60)], dtype=object)
    frame = draft.rank(histories, nobody, events.iloc[:0], cutoff, item_features=table, blank_features=blank)
    names = ["learned_score", "learned_rank", "item_purchases", "popularity_score", "item_price", "popularity_rank",
             "user_orders", "text_cosine", "item_trend"]
    ranker = LambdaRanker(RankerConfig(n_estimators=15, min_data_in_leaf=2, n_models=2)).fit(
        frame, rng.integers(0, 2, len(frame)), frame["row"].to_numpy(), names)
    recommender = TwoStageRecommender(sources, ranker, config, item_text=text, serves=RANKER if serves == "ranker"
                                      else serves)
    return recommender, blank, table, cutoff, events


def _sources_ranker():
    """A ranker of both test sources' columns, only to build a recommender that can make blank features."""
    rng = np.random.default_rng(1)
    features = pd.DataFrame({"learned_score": rng.random(100), "popularity_score": rng.random(100)})
    return LambdaRanker(RankerConfig(n_estimators=3, min_data_in_leaf=1, n_models=1)).fit(
        features, np.tile([1, 0, 0, 0, 0], 20), np.repeat(np.arange(20), 5), ["learned_score", "popularity_score"])


@pytest.mark.parametrize("serves", ["ranker", "popularity"])
def test_rows_without_events_ranked_as_arrays_score_exactly_as_the_frame(serves):
    from recmodels.recommender import blank_frame

    recommender, blank, table, cutoff, events = _blank_recommender(serves)
    histories = [np.array([3, 5]), np.array([1]), np.array([7, 7, 2]), np.array([], np.int64)]
    keys = np.array(["x", "y", "z", "w"], dtype=object)
    frame = recommender.rank(histories, keys, events.iloc[:0], cutoff, item_features=table, blank_features=blank)
    candidates, score = recommender.rank_blank(histories, blank)
    assert candidates.rows.tolist() == frame["row"].tolist() and candidates.items.tolist() == frame["item"].tolist()
    np.testing.assert_array_equal(score, frame["score"].to_numpy())
    pd.testing.assert_frame_equal(blank_frame(candidates, blank, score), frame)
    # Leaving the histories' items out before scoring changes no other candidate's score.
    kept, kept_score = recommender.rank_blank(histories, blank, seen=histories)
    unseen = ~np.array([item in set(histories[row].tolist()) for row, item in zip(frame["row"], frame["item"])])
    assert kept.items.tolist() == frame["item"][unseen].tolist()
    np.testing.assert_array_equal(kept_score, frame["score"].to_numpy()[unseen])
    # A row's answer does not depend on the rows beside it.
    for row, history in enumerate(histories):
        _, alone_score = recommender.rank_blank([history], blank)
        np.testing.assert_array_equal(alone_score, score[candidates.rows == row])


def test_blank_layout_refuses_a_table_without_the_rankers_features():
    recommender, blank, *_ = _blank_recommender()
    with pytest.raises(ValueError, match="item_price"):
        recommender.rank_blank([np.array([1])], blank.drop(columns="item_price"))


@pytest.mark.parametrize("serves", ["ranker", "popularity"])
def test_rows_with_events_ranked_as_arrays_score_exactly_as_the_frame(serves):
    from recmodels.event_table import EventTable

    recommender, blank, table, cutoff, events = _blank_recommender(serves)
    # Each customer's own events, as serving passes them: a, b and c, with some purchases after the cut-off.
    keys = np.array(["a", "b", "c"], dtype=object)
    histories = [events.loc[events["user_key"] == key, "item"].to_numpy()[-5:] for key in keys]
    frame = recommender.rank(histories, keys, events, cutoff, item_features=table, blank_features=blank)
    candidates, score, make_frame = recommender.rank_known(histories, keys, EventTable.of(events), cutoff, table)
    assert candidates.rows.tolist() == frame["row"].tolist() and candidates.items.tolist() == frame["item"].tolist()
    np.testing.assert_array_equal(score, frame["score"].to_numpy())
    pd.testing.assert_frame_equal(make_frame(), frame)
    # Leaving the histories' items out before the features changes no other candidate's features or score.
    kept, kept_score, kept_frame = recommender.rank_known(histories, keys, EventTable.of(events), cutoff, table,
                                                          seen=histories)
    unseen = ~np.array([item in set(histories[row].tolist()) for row, item in zip(frame["row"], frame["item"])])
    assert kept.items.tolist() == frame["item"][unseen].tolist() and 0 < unseen.sum() < len(frame)
    np.testing.assert_array_equal(kept_score, frame["score"].to_numpy()[unseen])
    pd.testing.assert_frame_equal(kept_frame().reset_index(drop=True), frame[unseen].reset_index(drop=True))


def test_arrays_leave_rows_without_events_and_unreproduced_inputs_to_the_frame():
    from recmodels.event_table import EventTable

    recommender, _, table, cutoff, events = _blank_recommender()
    table_events = EventTable.of(events)
    # "d" has no event: its features are the blank ones, which rank looks up.
    assert recommender.rank_known([np.array([1]), np.array([2])], np.array(["a", "d"], dtype=object), table_events,
                                  cutoff, table) is None
    # An infinite quantity: pandas' compensated sum treats it apart, so the frame path computes it.
    infinite = EventTable.of(events.assign(quantity=np.where(np.arange(len(events)) == 0, np.inf, events["quantity"])))
    assert recommender.rank_known([np.array([1])], np.array(["a"], dtype=object), infinite, cutoff, table) is None
