"""Stage-two candidates: the round-robin union of several scorers' top items, their recall and their labels.

A scorer maps ``histories`` to (B, n_items + 1) float32 scores with column 0 (PAD) at -inf, as every model in
``recmodels.baselines`` and ``SASRec.score`` do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

Scorer = Callable[[list[np.ndarray]], np.ndarray]

DEFAULT_N_CANDIDATES = 100  # candidates per row, all sources together


def _ranking_keys(scores: np.ndarray) -> np.ndarray:
    """(B, n_items) keys whose ascending order is each source's ranking: minus the score, NaN ranking with -inf;
    equal keys rank the lower id first. PAD (column 0) is never a candidate."""
    items = np.asarray(scores, dtype=np.float64)[:, 1:]
    return np.where(np.isnan(items), np.inf, -items)


def _top(keys: np.ndarray, depth: int) -> np.ndarray:
    """(B, depth) internal ids of each row's first ``depth`` items in its ranking, best first, ties to the lower id:
    the head of a full stable sort, found by a partition instead (a sort of every item costs most of the rest)."""
    n_rows, n_items = keys.shape
    if depth >= n_items:
        return np.argsort(keys, axis=1, kind="stable") + 1
    threshold = np.partition(keys, depth - 1, axis=1)[:, depth - 1 : depth]  # (B, 1) the depth-th best key
    better = keys < threshold
    tied = keys == threshold
    # Every item better than the threshold, then the tied ones by id until the row has ``depth``.
    room = depth - better.sum(axis=1, keepdims=True)
    chosen = better | (tied & (np.cumsum(tied, axis=1) <= room))
    ids = np.nonzero(chosen)[1].reshape(n_rows, depth)  # ascending ids per row
    order = np.argsort(np.take_along_axis(keys, ids, axis=1), axis=1, kind="stable")  # equal keys keep id order
    return np.take_along_axis(ids, order, axis=1) + 1


def _head(keys: np.ndarray, ordered: np.ndarray, depth: int) -> np.ndarray:
    """``_top`` of one row of keys whose sorted copy ``ordered`` is at hand: the threshold is read, not searched."""
    threshold = ordered[depth - 1]
    better = np.flatnonzero(keys < threshold)
    ids = np.r_[better, np.flatnonzero(keys == threshold)[: depth - len(better)]]
    return ids[np.lexsort((ids, keys[ids]))] + 1


def _ranks(keys: np.ndarray, rows: np.ndarray, items: np.ndarray, ordered: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each (row, item) in its row's full ranking (ties to the lower id): the items with a lower key,
    plus the items with an equal key and a lower id, plus one. ``ordered``: the sorted keys, when every row has
    the same."""
    ranks = np.empty(len(rows), dtype=np.int64)
    columns = items - 1
    values = keys[rows, columns]
    if len(keys) == 1:  # one row, the whole of a session's call: no row bounds to find
        parts = [(0, 0, len(rows))] if len(rows) else []
    else:
        bounds = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(keys)))]  # rows arrive sorted
        parts = [(row, bounds[row], bounds[row + 1]) for row in np.flatnonzero(np.diff(bounds))]
    for row, start, end in parts:
        row_sorted = np.sort(keys[row]) if ordered is None else ordered
        below = np.searchsorted(row_sorted, values[start:end], side="left")
        equal = np.searchsorted(row_sorted, values[start:end], side="right") - below
        ranks[start:end] = below + 1
        for at in np.flatnonzero(equal > 1):  # ties: count the equal items with a lower id
            position = start + at
            ranks[position] += np.count_nonzero(keys[row, : columns[position]] == values[position])
    return ranks


class RankingMemo:
    """Per source, the last ranking of a row of keys: its head and its sorted keys. A source that scores every
    history alike (popularity) is then ranked once, not once per row and call. A ranking is reused only for keys
    equal to the bit, so the candidates are exactly those ranked afresh."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # name -> (keys, head, sorted keys)

    def shared(self, name: str, keys: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(head of ``depth`` ids, sorted keys) of the ranking every row of ``keys`` (B, n_items) shares; None
        when the rows differ."""
        row = keys[0]
        if not (keys == row).all():
            return None
        last = self._last.get(name)  # replaced whole, never changed: safe to read beside another call
        if last is not None and len(last[1]) == depth and np.array_equal(last[0], row):
            return last[1], last[2]
        ordered = np.sort(row)
        head = _head(row, ordered, depth)
        self._last[name] = (row.copy(), head, ordered)
        return head, ordered


@dataclass(frozen=True)
class Candidates:
    """``generate_candidates``' rows as arrays, sorted by (row, item): what a caller that needs no frame reads."""

    rows: np.ndarray  # (n,) int64 index into the histories
    items: np.ndarray  # (n,) int64 internal ids
    scores: dict[str, np.ndarray]  # source -> (n,) float64, its raw score of the item
    ranks: dict[str, np.ndarray]  # source -> (n,) int64, 1-based rank in its full ranking

    def __len__(self) -> int:
        return len(self.items)

    def take(self, kept: np.ndarray) -> Candidates:
        """These candidates at ``kept`` (a mask or positions)."""
        return Candidates(self.rows[kept], self.items[kept], {name: v[kept] for name, v in self.scores.items()},
                          {name: v[kept] for name, v in self.ranks.items()})

    def frame(self) -> pd.DataFrame:
        """Columns ``row``, ``item``, then ``<source>_score`` and ``<source>_rank`` per source, in sources order."""
        columns: dict[str, np.ndarray] = {"row": self.rows, "item": self.items}
        for name in self.scores:
            columns[f"{name}_score"] = self.scores[name]
            columns[f"{name}_rank"] = self.ranks[name]
        return pd.DataFrame(columns)


def generate_candidates(
    sources: Mapping[str, Scorer],
    histories: list[np.ndarray],
    n_candidates: int = DEFAULT_N_CANDIDATES,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Per row, the union of the sources' top items, taken round-robin by rank until ``n_candidates``.

    Rank 1 of every source (in ``sources`` order), then rank 2, ...; an item already taken is skipped, so a
    row gets ``min(n_candidates, n_items)`` distinct items. Columns: ``row`` (index into ``histories``),
    ``item``, and per source ``<source>_score`` (its raw score of the item) and ``<source>_rank`` (1-based
    rank in its full ranking, ties to the lower id), filled for every candidate. Sorted by (row, item).
    Rows are scored ``batch_size`` at a time, so memory is bounded by batch_size x n_items per source.
    """
    return candidate_arrays(sources, histories, n_candidates, batch_size).frame()


def candidate_arrays(
    sources: Mapping[str, Scorer],
    histories: list[np.ndarray],
    n_candidates: int = DEFAULT_N_CANDIDATES,
    batch_size: int = 1024,
    memo: RankingMemo | None = None,
) -> Candidates:
    """``generate_candidates`` as arrays, without the frame; ``memo`` keeps the rankings rows share."""
    names = list(sources)
    if not names:
        raise ValueError("generate_candidates needs at least one source")
    if n_candidates < 1 or batch_size < 1:
        raise ValueError(f"n_candidates and batch_size must be >= 1, got {n_candidates}, {batch_size}")
    parts = []
    for start in range(0, len(histories), batch_size):
        parts.append(_batch_candidates(sources, histories[start : start + batch_size], n_candidates, start, memo))
    if len(parts) == 1:
        return parts[0]
    if not parts:
        nothing = np.array([], np.int64)
        return Candidates(nothing, nothing, {name: np.array([], np.float64) for name in names},
                          {name: nothing for name in names})
    return Candidates(np.concatenate([p.rows for p in parts]), np.concatenate([p.items for p in parts]),
                      {name: np.concatenate([p.scores[name] for p in parts]) for name in names},
                      {name: np.concatenate([p.ranks[name] for p in parts]) for name in names})


def _batch_candidates(sources: Mapping[str, Scorer], batch: list[np.ndarray], n_candidates: int,
                      start: int, memo: RankingMemo | None) -> Candidates:
    """``candidate_arrays`` of one batch of histories, the first being row ``start``."""
    names = list(sources)
    n_rows = len(batch)
    matrices = {name: np.asarray(scorer(batch)) for name, scorer in sources.items()}
    n_columns = matrices[names[0]].shape[1]
    for name, matrix in matrices.items():
        if matrix.shape != (n_rows, n_columns):
            raise ValueError(f"source {name!r} returned {matrix.shape}, expected {(n_rows, n_columns)}")
    keys = {name: _ranking_keys(matrix) for name, matrix in matrices.items()}  # (B, n_items) each
    # Source 1 alone yields n_candidates distinct items by its rank n_candidates, so deeper ranks are
    # never reached and the interleaving stays small.
    depth = min(n_candidates, n_columns - 1)
    heads, ordered = [], {}
    for name in names:
        shared = memo.shared(name, keys[name], depth) if memo is not None else None
        if shared is None:
            heads.append(_top(keys[name], depth))
        else:
            heads.append(np.tile(shared[0], (n_rows, 1)))
            ordered[name] = shared[1]
    interleaved = np.stack(heads, axis=2).reshape(n_rows, -1)
    # Keep the first occurrence of each item per row: sort by item (stably, so occurrences keep their
    # round-robin order), flag repeats, then cut each row after n_candidates kept items.
    by_item = np.argsort(interleaved, axis=1, kind="stable")
    sorted_items = np.take_along_axis(interleaved, by_item, axis=1)
    repeat_sorted = np.zeros_like(sorted_items, dtype=bool)
    repeat_sorted[:, 1:] = sorted_items[:, 1:] == sorted_items[:, :-1]
    repeat = np.empty_like(repeat_sorted)
    np.put_along_axis(repeat, by_item, repeat_sorted, axis=1)
    kept = ~repeat & (np.cumsum(~repeat, axis=1) <= n_candidates)
    rows, positions = np.nonzero(kept)
    items = interleaved[rows, positions]
    order = np.lexsort((items, rows))
    rows, items = rows[order].astype(np.int64), items[order].astype(np.int64)
    return Candidates(rows + start, items,
                      {name: matrices[name][rows, items].astype(np.float64) for name in names},
                      {name: _ranks(keys[name], rows, items, ordered.get(name)) for name in names})


def candidate_recall(candidates: pd.DataFrame, targets: list[np.ndarray]) -> float:
    """Share of all (row, target item) pairs whose item is among the row's candidates; NaN without targets.

    The ceiling of any re-ranker: a target the candidates miss cannot be ranked back in.
    """
    lengths = np.array([len(t) for t in targets], dtype=np.int64)
    if lengths.sum() == 0:
        return float("nan")
    target_rows = np.repeat(np.arange(len(targets)), lengths)
    target_items = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets])
    rows = candidates["row"].to_numpy(np.int64)
    if len(rows) and rows.max() >= len(targets):
        raise ValueError(f"candidates have row {rows.max()} but only {len(targets)} target rows")
    width = int(max(target_items.max(), candidates["item"].max() if len(candidates) else 0)) + 1
    candidate_codes = rows * width + candidates["item"].to_numpy(np.int64)
    return float(np.isin(target_rows * width + target_items, candidate_codes).mean())


def candidate_labels(candidates: pd.DataFrame, targets: list[np.ndarray]) -> np.ndarray:
    """(len(candidates),) int8: 1 where the candidate's item is among its row's targets."""
    lengths = [len(t) for t in targets]
    bought = pd.DataFrame({
        "row": np.repeat(np.arange(len(targets)), lengths),
        "item": np.concatenate(targets) if sum(lengths) else np.array([], dtype=np.int64),
        "label": np.int8(1),
    })
    merged = candidates[["row", "item"]].merge(bought, on=["row", "item"], how="left")
    return merged["label"].fillna(0).to_numpy(dtype=np.int8)
