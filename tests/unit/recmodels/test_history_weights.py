import numpy as np
import pytest
import scipy.sparse as sp

import recmodels.history_weights as hw
from recmodels.baselines import BuyAgain, ItemKNN, TextKNN
from recmodels.history_weights import history_weights


def _seqs(*rows):
    return [np.array(r, dtype=np.int64) for r in rows]


def test_weights_by_hand():
    # n_items 4: tokens above 4 are behaviours (5 + item = a view of item); decay 0.5, ages from the newest
    # counted event
    weights = history_weights(_seqs([3, 1, 3, 2], [], [4 + 5 * 1]), n_items=4, decay=0.5, behaviour_weight=0.25)
    assert weights.n_rows == 3 and weights.n_columns == 5
    assert weights.rows.tolist() == [0, 0, 0, 2]
    assert weights.items.tolist() == [1, 2, 3, 4]
    # item 3 at ages 3 and 1: 0.125 + 0.5; item 1 at age 2; item 2 at age 0; the view of item 4 weighs 0.25
    assert weights.weights.tolist() == [0.25, 1.0, 0.625, 0.25]
    purchases_only = history_weights(_seqs([4 + 5 * 1, 2]), n_items=4, decay=0.5)
    assert purchases_only.items.tolist() == [2] and purchases_only.weights.tolist() == [1.0]


def test_products_by_hand():
    weights = history_weights(_seqs([1, 2], [2]), n_items=2, decay=0.5)  # row 0: 1 -> 0.5, 2 -> 1; row 1: 2 -> 1
    dense = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]])
    assert weights.times_dense(dense).tolist() == [[3.5, 5.0], [3.0, 4.0]]
    similar = sp.csr_matrix(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.25, 0.0]]))
    assert weights.times_sparse(similar).tolist() == [[0.0, 0.25, 0.25], [0.0, 0.25, 0.0]]


def _random_histories(rng, n_items, count):
    histories = []
    for _ in range(count):
        length = int(rng.choice([0, 1, 3, 7, 20, 90]))
        pool = rng.integers(1, n_items + 1, size=max(1, length // 3))  # repeats: sums of several events
        codes = rng.integers(0, 3, size=length) * (rng.random(length) < 0.3)
        histories.append((rng.choice(pool, size=length) + codes * (n_items + 1)).astype(np.int64))
    return histories


@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_products_equal_scipys_to_the_bit(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    n_items = 300
    dense = rng.standard_normal((n_items + 1, 24))
    similar = sp.random(n_items + 1, n_items + 1, density=0.05, random_state=seed, format="csr") * 0.37
    for history in _random_histories(rng, n_items, 60):
        weights = history_weights([history], n_items, decay=0.9, behaviour_weight=0.3)
        monkeypatch.setattr(hw, "NUMPY_ENTRIES", 10**9)
        by_numpy = weights.times_dense(dense), weights.times_sparse(similar)
        monkeypatch.setattr(hw, "NUMPY_ENTRIES", -1)
        by_scipy = weights.times_dense(dense), weights.times_sparse(similar)
        assert np.array_equal(by_numpy[0], by_scipy[0]) and np.array_equal(by_numpy[1], by_scipy[1])


def test_a_history_scores_alike_alone_and_in_a_batch():
    rng = np.random.default_rng(3)
    n_items = 200
    train = [h for h in _random_histories(rng, n_items, 80) if len(h)]
    models = [BuyAgain(decay=0.8).fit(train, n_items), ItemKNN(behaviour_weight=0.5, decay=0.9).fit(train, n_items),
              TextKNN().fit(train, n_items, np.r_[np.zeros((1, 16)), rng.standard_normal((n_items, 16))])]
    histories = _random_histories(rng, n_items, 40)
    for model in models:
        batch = model.score(histories)
        alone = np.concatenate([model.score([history]) for history in histories])
        assert np.array_equal(batch, alone), type(model).__name__
