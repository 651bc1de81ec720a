"""The recency-weighted items of histories, and their products with item matrices: what the baselines score from.

scipy builds and multiplies a sparse matrix in about 0.1 ms however small it is, which was most of the cost of
scoring one short session. So a few histories' products are computed here in numpy, in scipy's own order of
operations (every output starts at zero and adds ``weight * row``, history item by history item in ascending item
order), and many histories' by scipy. The two agree to the bit (tested), and each history's weights are summed on
their own, so a history scores the same alone, in a micro-batch or in the batch table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recmodels.sequences import decode

NUMPY_ENTRIES = 64  # (history, item) entries up to which a product loops in numpy instead of calling scipy


def counted_events(tokens: np.ndarray, n_items: int, behaviour_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(items, weights) of a token sequence's events that count: purchases weigh 1, other behaviours
    ``behaviour_weight`` (left out at 0, so a purchases-only reading is exactly what it was before views)."""
    items, codes = decode(tokens, n_items)
    weights = np.where(codes == 0, 1.0, behaviour_weight)
    kept = weights > 0
    return items[kept], weights[kept]


@dataclass(frozen=True)
class HistoryWeights:
    """A batch of histories as (row, item, weight) entries sorted by row, then item, one entry per pair."""

    rows: np.ndarray  # (n,) int64 index into the histories
    items: np.ndarray  # (n,) int64 internal ids
    weights: np.ndarray  # (n,) float64
    n_rows: int
    n_columns: int  # n_items + 1

    def csr(self) -> sp.csr_matrix:
        """(n_rows, n_columns) in canonical form: scipy sorts and sums nothing again."""
        indptr = np.r_[0, np.cumsum(np.bincount(self.rows, minlength=self.n_rows))]
        return sp.csr_matrix((self.weights, self.items, indptr), shape=(self.n_rows, self.n_columns))

    def times_sparse(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Dense ``(n_rows, matrix columns)`` product with a CSR item matrix (``n_columns`` rows)."""
        if len(self.items) > NUMPY_ENTRIES:
            return (self.csr() @ matrix).toarray()
        data = matrix.data.astype(np.result_type(self.weights, matrix.data), copy=False)
        out = np.zeros((self.n_rows, matrix.shape[1]), dtype=data.dtype)
        starts, ends = matrix.indptr[self.items], matrix.indptr[self.items + 1]
        for row, weight, start, end in zip(self.rows, self.weights, starts, ends):
            out[row, matrix.indices[start:end]] += weight * data[start:end]  # a matrix row holds each column once
        return out

    def times_dense(self, matrix: np.ndarray) -> np.ndarray:
        """``(n_rows, matrix columns)`` product with a dense item matrix (``n_columns`` rows)."""
        if len(self.items) > NUMPY_ENTRIES:
            return np.asarray(self.csr() @ matrix)
        out = np.zeros((self.n_rows, matrix.shape[1]), dtype=np.result_type(self.weights, matrix))
        for row, item, weight in zip(self.rows, self.items, self.weights):
            out[row] += weight * matrix[item]
        return out


def history_weights(histories: list[np.ndarray], n_items: int, decay: float,
                    behaviour_weight: float = 0.0) -> HistoryWeights:
    """Per history and item, the sum over its counted events (``counted_events``) of weight * decay ** age, age 0
    for the most recent counted event. An item's events are summed in the order they happened."""
    counted = [counted_events(h, n_items, behaviour_weight) for h in histories]
    lengths = np.array([len(items) for items, _ in counted], dtype=np.int64)
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    if not len(rows):
        nothing = np.array([], np.int64)
        return HistoryWeights(nothing, nothing, np.array([], np.float64), len(histories), n_items + 1)
    items = np.concatenate([items for items, _ in counted]).astype(np.int64, copy=False)
    ends = np.repeat(np.cumsum(lengths), lengths)
    weights = np.power(decay, ends - 1 - np.arange(len(rows)), dtype=np.float64)
    weights *= np.concatenate([w for _, w in counted])
    order = np.lexsort((items, rows))  # stable: an item's events stay in time order
    rows, items, weights = rows[order], items[order], weights[order]
    first = np.r_[True, (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])]
    # bincount adds left to right from zero: the same sums whichever histories share the call.
    summed = np.bincount(np.cumsum(first) - 1, weights=weights)
    return HistoryWeights(rows[first], items[first], summed, len(histories), n_items + 1)
