import math

import numpy as np
import pytest

from recmodels.metrics import coverage_at_k, evaluate, ranking_metrics, topk_from_scores
from recmodels.splits import EvalSet


def _targets(*rows):
    return [np.array(r) for r in rows]


def test_perfect_ranking_scores_one():
    topk = np.array([[3, 1, 2, 4], [2, 4, 1, 3]])
    metrics = ranking_metrics(topk, _targets([3, 1], [2]), ks=(2, 4))
    for name in ("recall@2", "ndcg@2", "hr@2", "recall@4", "ndcg@4", "mrr"):
        assert metrics[name] == pytest.approx(1.0)


def test_single_target_at_rank_three():
    topk = np.array([[5, 6, 7, 1, 2, 3, 4, 8, 9, 10]])
    metrics = ranking_metrics(topk, _targets([7]), ks=(2, 10))
    assert metrics["ndcg@10"] == pytest.approx(1 / math.log2(4))  # = 0.5
    assert metrics["recall@10"] == 1.0 and metrics["hr@10"] == 1.0
    assert metrics["recall@2"] == 0.0 and metrics["ndcg@2"] == 0.0 and metrics["hr@2"] == 0.0
    assert metrics["mrr"] == pytest.approx(1 / 3)


def test_more_targets_than_slots_use_min_k_targets():
    # 3 targets, K = 2: one hit at rank 1 -> recall 1/2; ideal DCG counts 2 hits: 1 + 1/log2(3)
    topk = np.array([[1, 9, 2]])
    metrics = ranking_metrics(topk, _targets([1, 2, 3]), ks=(2, 3))
    assert metrics["recall@2"] == pytest.approx(0.5)
    assert metrics["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # K = 3: hits at ranks 1 and 3 of 3 targets
    assert metrics["recall@3"] == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_metrics_average_over_rows():
    topk = np.array([[1, 2], [3, 4]])
    metrics = ranking_metrics(topk, _targets([2], [5]), ks=(2,))
    assert metrics["hr@2"] == 0.5
    assert metrics["mrr"] == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert metrics["ndcg@2"] == pytest.approx(0.5 / math.log2(3))


def test_topk_never_returns_pad_and_breaks_ties_by_lower_id():
    scores = np.array([[9.0, 1.0, 3.0, 3.0, 0.5, 3.0]])  # PAD has the best score; items 2, 3, 5 tie
    assert topk_from_scores(scores, 3, None).tolist() == [[2, 3, 5]]
    assert topk_from_scores(scores, 4, None).tolist() == [[2, 3, 5, 1]]
    assert topk_from_scores(scores, 2, None).tolist() == [[2, 3]]
    assert topk_from_scores(scores, 50, None).shape == (1, 5)  # capped at the catalogue size


def test_topk_excludes_given_items_per_row():
    scores = np.array([[0.0, 4.0, 3.0, 2.0, 1.0], [0.0, 4.0, 3.0, 2.0, 1.0]])
    topk = topk_from_scores(scores, 2, exclude=[np.array([1, 1, 3]), np.array([], dtype=np.int64)])
    assert topk.tolist() == [[2, 4], [1, 2]]


def test_topk_treats_nan_as_worst():
    scores = np.array([[0.0, np.nan, 1.0, 2.0]])
    assert topk_from_scores(scores, 3, None).tolist() == [[3, 2, 1]]


def test_coverage():
    assert coverage_at_k(np.array([[1, 2, 3], [1, 4, 3]]), n_items=8, k=2) == pytest.approx(3 / 8)


def _fixed_scorer(histories):
    # Prefers high ids, and most of all the last history item + 1.
    n_items = 6
    scores = np.tile(np.arange(n_items + 1, dtype=np.float32), (len(histories), 1))
    for row, history in enumerate(histories):
        if len(history) and history[-1] < n_items:
            scores[row, history[-1] + 1] = 100.0
    scores[:, 0] = -np.inf
    return scores


def test_evaluate_full_ranking_exclusion_and_batching():
    eval_set = EvalSet(
        histories=[np.array([6, 1]), np.array([5]), np.array([3])],
        targets=[np.array([2]), np.array([6]), np.array([6, 1])],
        keys=np.array(["a", "b", "c"]),
    )
    # rankings: row a -> 2, 6, 5, ...; row b -> 6, 5, ...; row c -> 4, 6, 5, ...
    plain = evaluate(_fixed_scorer, eval_set, n_items=6, ks=(1, 2), batch_size=2)
    assert plain["n_rows"] == 3
    assert plain["hr@1"] == pytest.approx(2 / 3)
    assert plain["recall@2"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert plain["mrr"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert plain["coverage@1"] == pytest.approx(3 / 6)
    assert plain == evaluate(_fixed_scorer, eval_set, n_items=6, ks=(1, 2), batch_size=1)
    # Excluding history: row a loses 6 (its own item), so it ranks 2, 5; row b loses 5 -> 6, 4.
    excluded = evaluate(_fixed_scorer, eval_set, n_items=6, ks=(1, 2), exclude_history=True)
    assert excluded["hr@1"] == pytest.approx(2 / 3)


def test_excluded_history_items_cannot_be_hit():
    # History [6]: the scorer ranks 6, 5, 4, ...; the target 6 is a repeat of the history.
    eval_set = EvalSet(histories=[np.array([6])], targets=[np.array([6])], keys=np.array([0]))
    assert evaluate(_fixed_scorer, eval_set, n_items=6, ks=(1,))["hr@1"] == 1.0
    excluded = evaluate(_fixed_scorer, eval_set, n_items=6, ks=(1, 5), exclude_history=True)
    assert excluded["hr@5"] == 0.0 and excluded["mrr"] == 0.0


def test_evaluate_cold_rows():
    eval_set = EvalSet(
        histories=[np.array([1]), np.array([2])],
        targets=[np.array([2]), np.array([4])],
        keys=np.array([0, 1]),
    )
    # row 0's target (2) is the scorer's first pick; row 1's cold target (4) is 4th (after 3, 6, 5)
    results = evaluate(_fixed_scorer, eval_set, n_items=6, ks=(1, 2), cold_items=np.array([4]))
    assert results["cold/n_rows"] == 1
    assert results["cold/hr@1"] == 0.0 and results["cold/hr@2"] == 0.0
    assert results["hr@1"] == 0.5
    assert "cold/mrr" in results


def test_empty_target_row_is_an_error():
    with pytest.raises(ValueError):
        ranking_metrics(np.array([[1, 2]]), [np.array([], dtype=np.int64)], ks=(2,))


def test_metrics_at_k_above_the_catalogue_size_equal_the_full_ranking():
    rows = EvalSet(histories=[np.array([1]), np.array([2])], targets=_targets([3], [2, 4]), keys=np.arange(2))
    n_items = 4  # fewer than every K asked for

    def scorer(histories):
        return np.tile(np.array([-np.inf, 4.0, 3.0, 2.0, 1.0], dtype=np.float32), (len(histories), 1))

    results = evaluate(scorer, rows, n_items, (2, 10, 50))
    assert results["ndcg@10"] == results["ndcg@50"] == evaluate(scorer, rows, n_items, (4,))["ndcg@4"]
    assert results["recall@10"] == 1.0 and results["coverage@50"] == 1.0 and "ndcg@2" in results
