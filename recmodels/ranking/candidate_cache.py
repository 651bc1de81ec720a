"""Each history's candidates, kept for the next ranking of the same history.

A row's candidates (every source's scores and ranks of its round-robin union) depend on its history alone: the
sources score each history on its own. Most of a customer's events leave the history as it is (a view or a cart,
where the models read purchases only), yet each moves the features' cut-off, so the customer is ranked again:
then the kept candidates are reused and only the features and the ranker run, instead of every source scoring
the whole catalogue. Kept compactly (ids and ranks as int32, each score in the narrowest float that holds it
exactly), and restored exactly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recmodels.ranking.candidates import Candidates, RankingMemo, Scorer, candidate_arrays

CANDIDATE_CACHE_ENTRIES = 4096  # histories kept, the least recently used dropped first: about 20 MB at 100 each


@dataclass(frozen=True)
class _Kept:
    items: np.ndarray
    scores: dict[str, np.ndarray]
    ranks: dict[str, np.ndarray]


def _narrow(values: np.ndarray) -> np.ndarray:
    """``values`` (float64) as float32 where that holds each of them exactly (sources score in float32)."""
    narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow.astype(np.float64), values, equal_nan=True) else values


def _kept(candidates: Candidates, start: int, end: int) -> _Kept:
    rows = slice(start, end)
    return _Kept(candidates.items[rows].astype(np.int32),
                 {name: _narrow(values[rows]) for name, values in candidates.scores.items()},
                 {name: values[rows].astype(np.int32) for name, values in candidates.ranks.items()})


class CandidateCache:
    """``candidate_arrays`` with each history's candidates kept (the last ``entries`` histories). Thread-safe."""

    def __init__(self, entries: int = CANDIDATE_CACHE_ENTRIES):
        self.entries = entries
        self._kept: OrderedDict[tuple, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def candidates(self, sources: Mapping[str, Scorer], histories: list[np.ndarray], n_candidates: int,
                   memo: RankingMemo | None = None) -> Candidates:
        """``candidate_arrays(sources, histories, n_candidates, memo=memo)``, the histories seen before not
        scored again. ``sources`` must be the same on every call (one cache per recommender)."""
        arrays = [np.asarray(history) for history in histories]
        keys = [(n_candidates, history.dtype.str, history.tobytes()) for history in arrays]
        with self._lock:
            found = [self._kept.get(key) for key in keys]
            for key, kept in zip(keys, found):
                if kept is not None:
                    self._kept.move_to_end(key)
        missing = [row for row, kept in enumerate(found) if kept is None]
        if missing:
            computed = candidate_arrays(sources, [histories[row] for row in missing], n_candidates, memo=memo)
            bounds = np.searchsorted(computed.rows, np.arange(len(missing) + 1))
            for at, row in enumerate(missing):
                found[row] = _kept(computed, bounds[at], bounds[at + 1])
            with self._lock:
                for row in missing:
                    self._kept[keys[row]] = found[row]
                    self._kept.move_to_end(keys[row])
                while len(self._kept) > self.entries:
                    self._kept.popitem(last=False)
        names = list(sources)
        lengths = [len(kept.items) for kept in found]
        return Candidates(
            np.repeat(np.arange(len(found), dtype=np.int64), lengths),
            np.concatenate([kept.items for kept in found]).astype(np.int64) if found else np.array([], np.int64),
            {name: (np.concatenate([kept.scores[name] for kept in found]).astype(np.float64) if found
                    else np.array([], np.float64)) for name in names},
            {name: (np.concatenate([kept.ranks[name] for kept in found]).astype(np.int64) if found
                    else np.array([], np.int64)) for name in names})
