"""MicroBatcher: concurrent calls combined into one run, each caller getting its own result or its own error."""

import threading

import pytest
import torch
from threadpoolctl import threadpool_info

from orchestration.serving.batching import MicroBatcher, single_threaded


def test_waiting_calls_run_together_and_each_gets_its_own_result():
    started, release = threading.Event(), threading.Event()
    runs = []

    def run(items):
        runs.append(list(items))
        if len(runs) == 1:  # hold the first run until the others queue behind it
            started.set()
            release.wait(5)
        return [item * 10 for item in items]

    batcher = MicroBatcher(run)
    results = {}

    def call(item):
        results[item] = batcher.submit(item)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    started.wait(5)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 6)]
    for thread in others:
        thread.start()
    while len(batcher._queue) < 5:  # all five queued behind the running call
        threading.Event().wait(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert results == {i: i * 10 for i in range(6)}
    assert runs[0] == [0] and sorted(runs[1]) == [1, 2, 3, 4, 5] and len(runs) == 2


def test_a_failing_item_fails_only_its_own_call():
    def run(items):
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    assert MicroBatcher(run).submit("ok") == "OK"  # nothing else queued: a lone call runs alone
    errors, results = [], []
    gate = threading.Lock()
    gate.acquire()

    def blocked_run(items):
        with gate:
            return run(items)

    batcher = MicroBatcher(blocked_run)
    threads = [threading.Thread(target=lambda item=item: _collect(batcher, item, results, errors))
               for item in ("a", "bad", "c")]
    for thread in threads:
        thread.start()
    while len(batcher._queue) + (1 if batcher._running.locked() else 0) < 3:
        threading.Event().wait(0.01)
    gate.release()
    for thread in threads:
        thread.join(5)
    assert sorted(results) == ["A", "C"] and [str(e) for e in errors] == ["bad item"]


def _collect(batcher, item, results, errors):
    try:
        results.append(batcher.submit(item))
    except ValueError as error:
        errors.append(error)


def test_batches_are_capped():
    sizes = []
    batcher = MicroBatcher(lambda items: sizes.append(len(items)) or list(items), max_batch=2)
    with batcher._running:  # queue five while a run is under way
        threads = [threading.Thread(target=batcher.submit, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        while len(batcher._queue) < 5:
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join(5)
    assert sum(sizes) == 5 and max(sizes) <= 2


@pytest.mark.parametrize("results", [[], [1, 2]])
def test_a_run_must_answer_every_item_once(results):
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: results).submit("x")


def _shop():
    """(a recommender reading two sources and blank features, item-level table, blank features, purchases,
    cut-off)."""
    import numpy as np
    import pandas as pd

    from recmodels.ranking import LambdaRanker, RankerConfig
    from recmodels.recommender import TwoStageConfig, TwoStageRecommender, item_feature_table

    rng = np.random.default_rng(7)
    n, n_items = 200, 10
    events = pd.DataFrame({
        "user_key": rng.choice(["a", "b"], n), "item": rng.integers(1, n_items + 1, n),
        "occurred_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 50 * 24, n), unit="h"),
        "quantity": rng.integers(1, 4, n).astype(float), "unit_price": rng.choice([1.5, 2.0, 7.25], n),
        "basket_id": rng.integers(0, 30, n).astype(str),
    })

    def recent(histories):  # the history's items first, the latest best
        scores = np.tile(-np.arange(n_items + 1, dtype=np.float32), (len(histories), 1))
        for row, history in enumerate(histories):
            scores[row, history] = 20.0 + np.arange(len(history))
        scores[:, 0] = -np.inf
        return scores

    popular = np.r_[-np.inf, rng.random(n_items)].astype(np.float32)
    sources = {"recent": recent, "popularity": lambda histories: np.tile(popular, (len(histories), 1))}
    names = ["recent_score", "recent_rank", "popularity_score", "popularity_rank", "item_purchases", "user_orders"]
    cutoff = pd.Timestamp("2024-03-01")
    table = item_feature_table(events, cutoff, n_items)
    training = TwoStageRecommender(sources, LambdaRanker(), TwoStageConfig(n_candidates=6), serves="popularity").rank(
        [rng.integers(1, n_items + 1, size=3) for _ in range(40)], np.array(["a", "b"] * 20, dtype=object), events,
        cutoff)
    ranker = LambdaRanker(RankerConfig(n_estimators=10, min_data_in_leaf=2, n_models=2)).fit(
        training, rng.integers(0, 2, len(training)), training["row"].to_numpy(), names)
    recommender = TwoStageRecommender(sources, ranker, TwoStageConfig(n_candidates=6))
    return recommender, table, recommender.blank_features(table, cutoff), events, cutoff


def test_sessions_rank_alike_alone_batched_beside_customers_and_through_the_frame():
    import numpy as np
    import pandas as pd

    from orchestration.serving.batching import RankRequest, is_blank, rank_requests
    from recmodels.ranking.behaviour import no_behaviour
    from recmodels.recommender import no_purchases

    recommender, table, blank, events, cutoff = _shop()
    sessions = [np.array([3, 1]), np.array([5]), np.array([2, 9, 4])]
    requests = [RankRequest(h, no_purchases(), no_behaviour(), cutoff, exclude_history=i != 1)
                for i, h in enumerate(sessions)]
    customer = RankRequest(np.array([1, 2]), events[events["user_key"] == "a"], no_behaviour(), cutoff)
    assert [is_blank(recommender, r) for r in [*requests, customer]] == [True, True, True, False]
    together = rank_requests(recommender, [requests[0], customer, *requests[1:]], 10, table, blank)
    for request, ranked in zip([requests[0], customer, *requests[1:]], together):
        alone = rank_requests(recommender, [request], 10, table, blank)[0]
        np.testing.assert_array_equal(ranked.items, alone.items)
        np.testing.assert_array_equal(ranked.scores, alone.scores)
        pd.testing.assert_frame_equal(ranked.frame(), alone.frame())
    # The frame path (``rank`` with blank features) ranks the sessions alike, to the bit.
    frame = recommender.rank(sessions, np.array(["x", "y", "z"], dtype=object), no_purchases(), cutoff,
                             item_features=table, blank_features=blank)
    for row, (request, ranked) in enumerate(zip(requests, [together[0], *together[2:]])):
        mine = frame[frame["row"] == row]
        if request.exclude_history:
            mine = mine[~mine["item"].isin(request.history)]
        mine = mine.sort_values(["score", "item"], ascending=[False, True], kind="stable")
        np.testing.assert_array_equal(ranked.items, mine["item"].to_numpy())
        np.testing.assert_array_equal(ranked.scores, mine["score"].to_numpy())
        assert ranked.features_of(int(mine["item"].iloc[0]))[0] == 1
        expected = mine.drop(columns=["row", "features_as_of"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(ranked.frame(), expected)


def test_single_threaded_ranks_on_one_thread_and_gives_the_threads_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_threaded():
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
