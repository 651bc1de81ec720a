"""Vectorised draws over many lines at once: items by popularity within groups, rows of distributions."""

from __future__ import annotations

import numpy as np


class GroupSampler:
    """Draw items by popularity within a group (category x style, type, ...), vectorised over lines."""

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
        order = np.argsort(group, kind="stable")
        self.items = order
        sorted_group = group[order]
        self.count = np.bincount(group, minlength=n_groups)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        w = weight[order]
        group_total = np.bincount(sorted_group, weights=w, minlength=n_groups)
        within = np.cumsum(w) - np.repeat(np.cumsum(group_total) - group_total, self.count)
        within = within / group_total[sorted_group]
        within[self.start[self.count > 0] + self.count[self.count > 0] - 1] = 1.0
        self.cum = sorted_group + within  # group g's items span (g, g + 1]

    def has(self, group: np.ndarray) -> np.ndarray:
        return self.count[group] > 0

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Items for lines whose groups are non-empty (check with ``has``); u uniform in [0, 1)."""
        pos = np.searchsorted(self.cum, group + u, side="right")
        pos = np.clip(pos, self.start[group], self.start[group] + self.count[group] - 1)
        return self.items[pos]


def sample_rows(cum_rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn from each row's cumulative distribution (rows of cum_rows end at ~1)."""
    return np.minimum((u[:, None] > cum_rows).sum(axis=1), cum_rows.shape[1] - 1)


def first_index(sorted_keys: np.ndarray, n: int) -> np.ndarray:
    """For keys sorted ascending in 0..n-1: the first position of each key (of the next key if absent)."""
    return np.searchsorted(sorted_keys, np.arange(n), side="left")
