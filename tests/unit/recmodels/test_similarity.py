import numpy as np

from recmodels.similarity import nearest_neighbours


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_neighbours_by_hand():
    vectors = _unit([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]])
    indices, scores = nearest_neighbours(vectors, k=2)
    # cos(0,1)=0.8, cos(0,2)=0, cos(0,3)=-1; cos(1,2)=0.6
    assert indices.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    np.testing.assert_allclose(scores[0], [0.8, 0.0], atol=1e-6)
    np.testing.assert_allclose(scores[3], [0.0, -0.8], atol=1e-6)


def test_chunking_and_ties_do_not_change_the_answer():
    vectors = _unit(np.random.default_rng(0).normal(size=(50, 8)))
    vectors[7] = vectors[3]  # an exact tie for every query
    full = nearest_neighbours(vectors, k=5, chunk_size=1000)
    chunked = nearest_neighbours(vectors, k=5, chunk_size=7)
    assert np.array_equal(full[0], chunked[0])
    assert full[0][3][0] == 7 and full[0][7][0] == 3
    tie_rows = [row for row in range(50) if {3, 7} <= set(full[0][row])]
    for row in tie_rows:
        listed = list(full[0][row])
        assert listed.index(3) < listed.index(7)


def test_query_subset_and_tiny_catalogue():
    vectors = _unit([[1, 0], [0, 1]])
    indices, _ = nearest_neighbours(vectors, queries=np.array([1]), k=5)
    assert indices.tolist() == [[0]]
