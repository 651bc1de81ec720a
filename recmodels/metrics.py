"""Full-ranking top-K metrics: every row is ranked against the whole catalogue, never sampled negatives."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recmodels.sequences import PAD
from recmodels.splits import EvalSet
from recmodels.stats import Interval, bootstrap_intervals


def topk_from_scores(scores: np.ndarray, k: int, exclude: list[np.ndarray] | None = None) -> np.ndarray:
    """(B, k) internal ids of the best-scored items per row, best first.

    ``scores`` is (B, n_items + 1) with column 0 = PAD, which is never returned. Items in ``exclude[row]`` get
    -inf, as do NaN scores; they only appear when fewer than ``k`` items are left. Ties go to the lower id so
    results are reproducible. Rows are independent, so callers may pass any chunk of rows.
    """
    scores = np.asarray(scores, dtype=np.float64)[:, 1:].copy()  # drop PAD: it can never be recommended
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None:
        rows = np.repeat(np.arange(n_rows), [len(e) for e in exclude])
        columns = (
            np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude]) if n_rows else np.array([], int)
        )
        # Purchases only: another behaviour's token (above n_items) is not an item the customer has.
        keep = (columns != PAD) & (columns < scores.shape[1] + 1)
        scores[rows[keep], columns[keep] - 1] = -np.inf
    if k <= 0:
        return np.empty((n_rows, 0), dtype=np.int64)
    # A partition finds the k-th best score in O(n) per row; everything above it is kept, and of the items
    # tied with it the lowest ids fill the remaining slots, so ties never depend on the partition's internals.
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # (B, 1)
    above = scores > kth
    tied = scores == kth
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True)))
    candidates = np.nonzero(chosen)[1].reshape(n_rows, k)  # (B, k), ascending ids
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -candidate_scores), axis=1)
    return np.take_along_axis(candidates, order, axis=1) + 1


def _hits(topk: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    """(B, K) bool: is the item at each rank a target of its row."""
    n_rows = len(targets)
    width = int(max(topk.max(initial=0), max((t.max(initial=0) for t in targets), default=0))) + 1
    target_codes = np.concatenate(
        [row * width + np.asarray(t, dtype=np.int64) for row, t in enumerate(targets)]
        or [np.array([], np.int64)]
    )
    return np.isin(np.arange(n_rows)[:, None] * width + topk, target_codes)


def per_row_metrics(topk: np.ndarray, targets: list[np.ndarray], ks) -> dict[str, np.ndarray]:
    """Metrics per row (customer), so that callers can average over any subset of rows, bootstrap them, or
    compare two models on the same rows."""
    hits = _hits(topk, targets)
    n_targets = np.array([len(np.unique(t)) for t in targets], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(hits.shape[1]) + 2.0)  # rank r (0-based) -> 1 / log2(r + 2)
    ideal_cumulative = np.r_[0.0, np.cumsum(discounts)]
    out = {}
    for k in ks:
        top = hits[:, :k]
        n_relevant = np.minimum(k, n_targets)  # a row cannot hit more than k targets in k slots
        out[f"recall@{k}"] = top.sum(axis=1) / n_relevant
        out[f"ndcg@{k}"] = (top * discounts[:k]).sum(axis=1) / ideal_cumulative[n_relevant.astype(int)]
        out[f"hr@{k}"] = top.any(axis=1).astype(np.float64)
    first = np.argmax(hits, axis=1)
    out["mrr"] = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)
    return out


def ranking_metrics(topk: np.ndarray, targets: list[np.ndarray], ks=(10, 20, 50)) -> dict[str, float]:
    """Mean recall@K, ndcg@K (binary relevance), hr@K for each K, and mrr (first hit within the topk given).

    recall@K divides by min(K, |targets|) and the ideal DCG counts min(K, |targets|) hits, so a perfect
    ranking scores 1 even when a row has more targets than slots.
    """
    if max(ks) > topk.shape[1]:
        raise ValueError(f"topk has {topk.shape[1]} columns, fewer than the largest K {max(ks)}")
    if len(targets) == 0:
        return {}
    if any(len(t) == 0 for t in targets):
        raise ValueError("every evaluated row needs at least one target")
    return {name: float(values.mean()) for name, values in per_row_metrics(topk, targets, ks).items()}


def coverage_at_k(topk: np.ndarray, n_items: int, k: int = 10) -> float:
    """Share of the catalogue that appears in at least one row's top ``k``."""
    shown = np.unique(topk[:, :k])
    return int((shown != 0).sum()) / n_items if n_items else 0.0  # 0 is PAD, not an item


def ranked_topk(
    scorer: Callable[[list[np.ndarray]], np.ndarray],
    eval_set: EvalSet,
    n_items: int,
    k: int,
    exclude_history: bool = False,
    batch_size: int = 1024,
) -> np.ndarray:
    """(rows, min(k, n_items)) top-K internal ids of ``scorer`` on ``eval_set``, best first.

    ``scorer`` maps a batch of histories to (B, n_items + 1) scores. Scores are turned into top-K lists one
    batch at a time, so memory is batch_size x n_items whatever the number of rows. With ``exclude_history``
    the history's own items cannot be recommended (the usual choice when repeats are not the task).
    """
    max_k = min(k, n_items)
    topk_batches = []
    for start in range(0, len(eval_set.histories), batch_size):
        histories = eval_set.histories[start : start + batch_size]
        scores = scorer(histories)
        if scores.shape != (len(histories), n_items + 1):
            raise ValueError(f"scorer returned {scores.shape}, expected {(len(histories), n_items + 1)}")
        topk_batches.append(topk_from_scores(scores, max_k, exclude=histories if exclude_history else None))
    return np.concatenate(topk_batches) if topk_batches else np.empty((0, max_k), dtype=np.int64)


def evaluate(
    scorer: Callable[[list[np.ndarray]], np.ndarray],
    eval_set: EvalSet,
    n_items: int,
    ks=(10, 20, 50),
    exclude_history: bool = False,
    batch_size: int = 1024,
    cold_items: np.ndarray | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of ``scorer`` on ``eval_set`` (``ranked_topk``, then ``topk_metrics``).

    ``cold_items`` (internal ids with few training interactions) adds ``cold/...`` metrics over the rows whose
    targets include a cold item. Returns metric name -> value, with ``n_rows`` and ``cold/n_rows``. On a
    catalogue smaller than K the top-K list is the whole ranking, so metric@K is reported as metric@n_items.
    """
    ks = tuple(sorted(ks))
    topk = ranked_topk(scorer, eval_set, n_items, ks[-1], exclude_history, batch_size)
    return topk_metrics(topk, eval_set.targets, n_items, ks, cold_items)


def topk_metrics(
    topk: np.ndarray, targets: list[np.ndarray], n_items: int, ks=(10, 20, 50), cold_items: np.ndarray | None = None,
    per_row: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """``evaluate``'s metrics from ready top-K lists (PAD = 0 fills short lists and counts as a miss); for
    rankers that order a candidate set rather than score the whole catalogue. ``per_row``: the
    ``per_row_metrics`` of the same lists and ``ks``, when the caller has them already."""
    ks = tuple(sorted(ks))
    results: dict[str, float] = {"n_rows": float(len(targets))}
    if not len(targets):
        return results
    per_row = per_row_metrics(topk, targets, ks) if per_row is None else per_row
    results.update({name: float(values.mean()) for name, values in per_row.items()})
    results.update({f"coverage@{k}": coverage_at_k(topk, n_items, k) for k in ks})
    if cold_items is not None:
        cold = cold_rows(targets, cold_items)
        results["cold/n_rows"] = float(cold.sum())
        if cold.any():
            results.update({f"cold/{name}": float(values[cold].mean()) for name, values in per_row.items()})
    return results


def cold_rows(targets: list[np.ndarray], cold_items: np.ndarray) -> np.ndarray:
    """Bool per row: does any of its targets belong to ``cold_items``."""
    return np.array([np.isin(t, cold_items).any() for t in targets], dtype=bool)


def _coverage_statistic(topk: np.ndarray, n_items: int, k: int):
    """Coverage@k of a resample, from how often each row is drawn: an item is covered when a drawn row shows it."""
    from scipy import sparse

    shown = topk[:, :k]
    rows = np.repeat(np.arange(len(topk)), shown.shape[1])
    items = shown.ravel()
    keep = items != 0
    incidence = sparse.csr_matrix((np.ones(int(keep.sum())), (rows[keep], items[keep])),
                                  shape=(len(topk), n_items + 1))
    incidence.data[:] = 1  # an item twice in one row counts once

    def coverage(counts: np.ndarray) -> np.ndarray:
        return np.asarray(((incidence.T @ counts.T) > 0).sum(axis=0)).ravel() / n_items if n_items else 0 * counts[:, 0]

    return coverage


def metric_intervals(
    topk: np.ndarray, targets: list[np.ndarray], n_items: int, ks=(10, 20, 50), cold_items: np.ndarray | None = None,
    per_row: dict[str, np.ndarray] | None = None,
) -> dict[str, Interval]:
    """``topk_metrics``'s names -> their 95% bootstrap interval over rows (customers), seeded; coverage@K too,
    resampled the same way. ``cold/...`` metrics resample the cold rows only. ``per_row`` as in ``topk_metrics``."""
    ks = tuple(sorted(ks))
    if not len(targets):
        return {}
    per_row = per_row_metrics(topk, targets, ks) if per_row is None else per_row
    coverage = {f"coverage@{k}": _coverage_statistic(topk, n_items, k) for k in ks}
    out = bootstrap_intervals(per_row, coverage)
    if cold_items is not None:
        cold = cold_rows(targets, cold_items)
        if cold.any():
            out.update({f"cold/{name}": interval for name, interval in
                        bootstrap_intervals({name: values[cold] for name, values in per_row.items()}).items()})
    return out
