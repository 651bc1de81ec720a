import math

import numpy as np
import pandas as pd
import pytest

from recmodels.baselines import (
    BuyAgain,
    ItemKNN,
    MostPopular,
    RecentPopular,
    TextKNN,
    load_baselines,
    save_baselines,
)
from recmodels.metrics import topk_from_scores
from recmodels.sequences import SequenceConfig
from recmodels.splits import temporal_split


def _seqs(*rows):
    return [np.array(r, dtype=np.int64) for r in rows]


def _ranking(model, history):
    return topk_from_scores(model.score([np.array(history, dtype=np.int64)]), model.n_items, None)[0].tolist()


def test_most_popular_order_with_ties_to_lower_id():
    model = MostPopular().fit(_seqs([1, 2, 2], [2, 3]), n_items=4)  # counts 1:1, 2:3, 3:1, 4:0
    assert _ranking(model, [1]) == [2, 1, 3, 4]
    scores = model.score(_seqs([1], []))
    assert scores.shape == (2, 5) and scores.dtype == np.float32 and np.all(scores[:, 0] == -np.inf)


def test_recent_popular_last_events_per_sequence():
    # last event of each sequence: 2 and 2; global counts 1:2, 2:2, 3:1 order the rest
    model = RecentPopular(last_n=1).fit(_seqs([1, 1, 2], [3, 2]), n_items=4)
    assert _ranking(model, []) == [2, 1, 3, 4]


def test_recent_popular_with_timestamps():
    train = _seqs([1, 1, 1], [3, 2])
    days = [
        np.array(d, dtype="datetime64[ns]")
        for d in (["2020-01-01", "2020-01-02", "2020-01-03"], ["2020-01-09", "2020-01-10"])
    ]
    # the latest 40% of the 5 events (by time) are 3 and 2; item 1 is the most popular overall but stale
    model = RecentPopular(fraction=0.4).fit(train, n_items=3, timestamps=days)
    assert _ranking(model, []) == [2, 3, 1]


def test_buy_again_ranks_most_frequent_history_item_first():
    model = BuyAgain(decay=0.9).fit(_seqs([4, 4, 4], [5, 5], [2]), n_items=5)
    # weights: 1 -> 0.9 + 0.81 + 0.729 = 2.439, 2 -> 1 (latest), 3 -> 0.9 ** 4 = 0.656; then popularity: 4, 5
    assert _ranking(model, [3, 1, 1, 1, 2]) == [1, 2, 3, 4, 5]


def test_buy_again_equal_weights_fall_back_to_popularity():
    model = BuyAgain(decay=1.0).fit(_seqs([3, 3], [2]), n_items=3)
    assert _ranking(model, [2, 3]) == [3, 2, 1]  # both bought once; 3 is more popular


def test_item_knn_similarity_by_hand():
    # sequences holding each item: n1 = 2, n2 = 2, n3 = 2, n4 = 1
    # co-occurrence: c12 = 2, c13 = 1, c23 = 1, c34 = 1
    model = ItemKNN().fit(_seqs([1, 2], [1, 2, 3], [3, 4]), n_items=4)
    sim = model.similarity_.toarray()
    assert sim[1, 2] == pytest.approx(2 / math.sqrt(2 * 2))
    assert sim[1, 3] == pytest.approx(1 / 2) and sim[2, 3] == pytest.approx(1 / 2)
    assert sim[3, 4] == pytest.approx(1 / math.sqrt(2)) and sim[4, 3] == pytest.approx(1 / math.sqrt(2))
    assert sim[1, 4] == 0 and np.all(np.diag(sim) == 0)
    # history [1, 3] with decay 0.5: w1 = 0.5, w3 = 1
    model = ItemKNN(decay=0.5).fit(_seqs([1, 2], [1, 2, 3], [3, 4]), n_items=4)
    scores = model.score(_seqs([1, 3]))[0]
    assert scores[1:].tolist() == pytest.approx([1 * 0.5, 0.5 * 1 + 1 * 0.5, 0.5 * 0.5, 1 / math.sqrt(2)])


def test_item_knn_neighbours_window_and_shrink():
    train = _seqs([1, 2], [1, 2, 3], [3, 4])
    top1 = ItemKNN(neighbours=1).fit(train, n_items=4).similarity_.toarray()
    assert np.count_nonzero(top1[3]) == 1 and top1[3, 4] > 0  # 4 (0.71) beats 1 and 2 (0.5)
    windowed = ItemKNN(window=1).fit(train, n_items=4).similarity_.toarray()
    assert windowed[1, 3] == 0 and windowed[1, 2] == pytest.approx(1.0)  # 1 and 3 are 2 positions apart
    shrunk = ItemKNN(shrink=2.0).fit(train, n_items=4).similarity_.toarray()
    assert shrunk[1, 2] == pytest.approx(2 / (2 + 2))


def test_item_knn_unreached_items_follow_popularity():
    model = ItemKNN().fit(_seqs([1, 2], [3, 3, 4], [3]), n_items=5)
    assert _ranking(model, [1]) == [
        2,
        3,
        1,
        4,
        5,
    ]  # only 2 is reached; then 3 (3 events), 1 and 4 (1 each), 5


def test_text_knn_cosine_to_history_profile():
    embeddings = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)  # item 4 has no text
    model = TextKNN(decay=0.5).fit(_seqs([2, 2], [4]), n_items=4, embeddings=embeddings)
    scores = model.score(_seqs([1]))[0]
    assert scores[1:].tolist() == pytest.approx([1.0, 0.0, 1 / math.sqrt(2), 0.0])
    # [1, 2] with decay 0.5: profile 0.5 * e1 + e2, cosine with e3 = 1.5 / (sqrt(1.25) * sqrt(2))
    scores = model.score(_seqs([1, 2]))[0]
    assert scores[3] == pytest.approx(1.5 / (math.sqrt(1.25) * math.sqrt(2)), rel=1e-6)
    assert _ranking(model, []) == [2, 4, 1, 3]  # no profile: popularity


def test_baselines_score_full_catalogue_with_pad_at_minus_inf():
    train = _seqs([1, 2, 3], [2, 3])
    embeddings = np.eye(4, dtype=np.float32)
    models = [
        MostPopular().fit(train, 3),
        RecentPopular().fit(train, 3),
        BuyAgain().fit(train, 3),
        ItemKNN().fit(train, 3),
        TextKNN().fit(train, 3, embeddings=embeddings),
    ]
    for model in models:
        scores = model.score(_seqs([1], [], [3, 3]))
        assert scores.shape == (3, 4) and scores.dtype == np.float32
        assert np.all(scores[:, 0] == -np.inf) and np.all(np.isfinite(scores[:, 1:]))


def _stored_month_split():
    """Three customers over a month, two of them with a test target after 2024-01-25."""
    rows = [("u1", "a", "01-02"), ("u1", "b", "01-08"), ("u1", "c", "01-27"), ("u2", "b", "01-03"),
            ("u2", "c", "01-04"), ("u2", "a", "01-12"), ("u2", "d", "01-28"), ("u3", "d", "01-10")]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at"])
    events["occurred_at"] = pd.to_datetime("2024-" + events["occurred_at"])
    return temporal_split(events, SequenceConfig(), pd.Timestamp("2024-01-25"), pd.Timestamp("2024-01-15"))


def test_baselines_reload_with_identical_scores(tmp_path):
    split = _stored_month_split()
    train, times, rows = split.train_for_test, split.train_for_test_timestamps, split.test
    n = split.n_items
    text = np.random.default_rng(0).normal(size=(n + 1, 4)).astype(np.float32)
    text[0] = 0
    models = {"pop": MostPopular().fit(train, n), "recent": RecentPopular().fit(train, n, timestamps=times),
              "again": BuyAgain(decay=0.5).fit(train, n), "knn": ItemKNN(window=2).fit(train, n), "text": TextKNN().fit(train, n, text)}
    save_baselines(models, tmp_path, {})
    loaded = load_baselines(tmp_path)
    assert list(loaded) == list(models) and loaded["again"].decay == 0.5 and loaded["knn"].window == 2
    for name, model in models.items():
        np.testing.assert_array_equal(loaded[name].score(rows.histories), model.score(rows.histories))


def test_pick_options_keeps_the_grids_best_on_the_rows_given():
    from recmodels.baselines import BuyAgain, pick_options
    from recmodels.splits import EvalSet

    # History 1 1 2, target 2: plain counts rank 1 first (NDCG@10 1/log2(3)); a steep decay ranks 2 first (1.0).
    rows = EvalSet(histories=[np.array([1, 1, 2])], targets=[np.array([2])], keys=np.array(["u"]))
    options, scores = pick_options(BuyAgain, ({"decay": 1.0}, {"decay": 0.1}), [np.array([1, 2, 3])], rows, 3)
    assert options == {"decay": 0.1} and scores == pytest.approx([1 / np.log2(3), 1.0])
    tie, _ = pick_options(BuyAgain, ({"decay": 0.1}, {"decay": 0.2}), [np.array([1, 2, 3])], rows, 3)
    assert tie == {"decay": 0.1}  # equal scores keep the earlier option
