import numpy as np

from recmodels.ranking.candidate_cache import CandidateCache
from recmodels.ranking.candidates import candidate_arrays

N_ITEMS = 30


def _sources(calls: list[int]):
    """Two history-dependent sources, one scoring in float32 and one in float64 values float32 cannot hold; each
    call's row count is appended to ``calls``."""
    rng = np.random.default_rng(0)
    base = rng.random(N_ITEMS + 1)

    def learned(histories):
        calls.append(len(histories))
        scores = np.tile(-np.arange(N_ITEMS + 1, dtype=np.float32), (len(histories), 1))
        for row, history in enumerate(histories):
            scores[row, history] = 50.0 + np.arange(len(history))
        scores[:, 0] = -np.inf
        return scores

    def precise(histories):
        scores = np.tile(base, (len(histories), 1)) + np.array([[len(h) / 3] for h in histories])
        scores[:, 0] = -np.inf
        return scores

    return {"learned": learned, "precise": precise}


def _assert_equal(got, expected):
    assert got.rows.dtype == expected.rows.dtype == np.int64 and got.items.dtype == np.int64
    np.testing.assert_array_equal(got.rows, expected.rows)
    np.testing.assert_array_equal(got.items, expected.items)
    for name in expected.scores:
        assert got.scores[name].dtype == np.float64 and got.ranks[name].dtype == np.int64
        np.testing.assert_array_equal(got.scores[name], expected.scores[name])
        np.testing.assert_array_equal(got.ranks[name], expected.ranks[name])


def test_kept_candidates_are_those_scored_afresh_and_a_kept_history_is_not_scored_again():
    calls: list[int] = []
    sources = _sources(calls)
    cache = CandidateCache()
    first = [np.array([3, 5]), np.array([1]), np.array([7, 7, 2])]
    _assert_equal(cache.candidates(sources, first, 6), candidate_arrays(sources, first, 6))
    assert calls == [3, 3] and len(cache) == 3
    # Two kept, one new and one kept twice: only the new one is scored.
    second = [np.array([1]), np.array([4, 4]), np.array([3, 5]), np.array([1])]
    _assert_equal(cache.candidates(sources, second, 6), candidate_arrays(sources, second, 6))
    assert calls[2] == 1 and len(cache) == 4
    # Another candidate count is another ranking; so is another dtype of the same ids.
    cache.candidates(sources, [np.array([1])], 4)
    cache.candidates(sources, [np.array([1], np.int32)], 6)
    assert calls[4:] == [1, 1]
    assert len(cache.candidates(sources, [], 6)) == 0


def test_the_least_recently_used_history_goes_first():
    calls: list[int] = []
    sources = _sources(calls)
    cache = CandidateCache(entries=2)
    a, b, c = np.array([1]), np.array([2]), np.array([3])
    for history in (a, b, a, c):  # a used again after b: b is the one dropped for c
        cache.candidates(sources, [history], 5)
    assert len(cache) == 2
    scored = len(calls)
    cache.candidates(sources, [a, c], 5)
    assert len(calls) == scored
    cache.candidates(sources, [b], 5)
    assert len(calls) == scored + 1
