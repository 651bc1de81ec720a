"""Nearest neighbours by cosine similarity over L2-normalised vectors, in bounded memory."""

from __future__ import annotations

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), so dot products are cosines; zero rows (no text) stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def nearest_neighbours(
    vectors: np.ndarray, queries: np.ndarray | None = None, k: int = 10, chunk_size: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``vectors`` for each query row (default: every row), excluding the row itself.

    ``vectors`` must be L2-normalised, so the dot product is the cosine. Returns ``(indices, scores)``, both
    ``(n_queries, k)``, best first; ties go to the lower index so results are reproducible. Queries are scored
    in chunks, so memory stays at ``chunk_size x n`` floats whatever the catalogue size.
    """
    n = len(vectors)
    rows = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    k = min(k, n - 1)
    indices = np.empty((len(rows), max(k, 0)), dtype=np.int64)
    scores = np.empty((len(rows), max(k, 0)), dtype=np.float32)
    if k <= 0:
        return indices, scores
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        similarity = vectors[chunk] @ vectors.T  # (chunk, n)
        similarity[np.arange(len(chunk)), chunk] = -np.inf
        # A stable sort on the negated scores breaks ties by index; argpartition first keeps it O(n) per row.
        candidates = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < n else np.argsort(-similarity, axis=1)
        candidate_scores = np.take_along_axis(similarity, candidates, axis=1)
        order = np.lexsort((candidates, -candidate_scores), axis=1)
        indices[start : start + len(chunk)] = np.take_along_axis(candidates, order, axis=1)
        scores[start : start + len(chunk)] = np.take_along_axis(candidate_scores, order, axis=1)
    return indices, scores
