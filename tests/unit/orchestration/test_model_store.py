"""Model artifacts on disk and the model assets' plain helpers, without Dagster."""

import numpy as np
import pandas as pd

from orchestration.store.reports import metric_rows
from orchestration.store.model_files import StoredSplit, aligned_text_matrix, load_split, save_split
from recmodels.baselines import BuyAgain, ItemKNN, MostPopular, RecentPopular, TextKNN, load_baselines, save_baselines
from recmodels.sequences import SequenceConfig
from recmodels.splits import split_cutoffs, temporal_split


def _events():
    rows = [("u1", "a", "2024-01-01"), ("u1", "b", "2024-01-05"), ("u1", "c", "2024-01-20"), ("u1", "a", "2024-01-29"),
            ("u2", "b", "2024-01-02"), ("u2", "c", "2024-01-03"), ("u2", "d", "2024-01-21"), ("u2", "b", "2024-01-30"),
            ("u3", "d", "2024-01-25")]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at"]).assign(occurred_at=lambda f: pd.to_datetime(f.occurred_at))


def _stored():
    events = _events()
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


def test_baselines_reload_with_identical_scores(tmp_path):
    stored = _stored()
    train, times, rows = stored.training("test")
    n = stored.split.n_items
    text = np.random.default_rng(0).normal(size=(n + 1, 4)).astype(np.float32)
    text[0] = 0
    models = {"pop": MostPopular().fit(train, n), "recent": RecentPopular().fit(train, n, timestamps=times),
              "again": BuyAgain(decay=0.5).fit(train, n), "knn": ItemKNN(window=2).fit(train, n), "text": TextKNN().fit(train, n, text)}
    save_baselines(models, tmp_path, {})
    loaded = load_baselines(tmp_path)
    assert list(loaded) == list(models) and loaded["again"].decay == 0.5 and loaded["knn"].window == 2
    for name, model in models.items():
        np.testing.assert_array_equal(loaded[name].score(rows.histories), model.score(rows.histories))


def test_text_matrix_zeroes_pad_missing_and_empty_items():
    embedded = pd.DataFrame({"item_id": ["b", "a", "z"], "is_empty_text": [False, True, False]})
    vectors = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    matrix, found = aligned_text_matrix(np.array(["a", "b", "c"]), embedded, vectors)
    np.testing.assert_array_equal(matrix, [[0, 0], [0, 0], [1, 0], [0, 0]])  # PAD, a (empty text), b, c (no vector)
    assert found == 1


def test_metric_rows_split_names_into_segment_metric_and_k():
    rows = metric_rows("m", "test", "allowed", {"n_rows": 4.0, "ndcg@10": 0.5, "mrr": 0.25, "cold/n_rows": 1.0, "cold/hr@20": 1.0})
    assert rows == [
        {"model": "m", "split": "test", "variant": "allowed", "segment": "all", "metric": "ndcg", "k": 10, "value": 0.5, "n_rows": 4},
        {"model": "m", "split": "test", "variant": "allowed", "segment": "all", "metric": "mrr", "k": None, "value": 0.25, "n_rows": 4},
        {"model": "m", "split": "test", "variant": "allowed", "segment": "cold", "metric": "hr", "k": 20, "value": 1.0, "n_rows": 1},
    ]
