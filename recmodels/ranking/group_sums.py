"""Per-group sums and medians of numpy arrays that equal pandas' group-by results to the bit.

``user_features`` computes the ranker's features without pandas; for the ranker to score exactly as before, every
sum must be added as pandas' group-by adds it and every median taken as it takes it."""

from __future__ import annotations

import numpy as np

_EXACT_BELOW = 2.0**52  # whole numbers whose absolute sum stays below this add exactly in any order


def group_sum(codes: np.ndarray, values: np.ndarray, n: int, monotonic: bool) -> np.ndarray:
    """Per group 0..n-1 the sum of its non-NaN ``values`` (0 for a group without any), added as pandas' group-by sum
    adds them: where its group ids are ``monotonic`` (each group's rows adjacent, in its order) and no value is NaN,
    ``np.add.reduceat`` over each group's rows (pandas' fast path); else Kahan-compensated, in row order. Finite
    values only."""
    kept = ~np.isnan(values)
    if np.abs(values[kept]).sum() < _EXACT_BELOW and (values[kept] == np.round(values[kept])).all():
        # Units and counts: every partial sum is exact, so any order of adding gives pandas' result.
        return np.bincount(codes[kept], weights=values[kept], minlength=n).astype(np.float64)  # int64 when empty
    if monotonic and kept.all():
        sums = np.zeros(n)
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        sums[codes[starts]] = np.add.reduceat(values, starts)
        return sums
    codes, values = codes[kept], values[kept]
    order = np.argsort(codes, kind="stable")
    values = values[order]
    counts = np.bincount(codes, minlength=n)
    starts = np.cumsum(counts) - counts
    longest = int(counts.max(initial=0))
    # A step per value in Python, or a step per position across all groups in numpy: whichever is fewer steps.
    if len(values) < 40 * longest:
        return _kahan_by_group(values, starts, counts)
    return _kahan_by_position(values, starts, counts, longest)


def adjacent(codes: np.ndarray) -> bool:
    """Whether each group's rows are adjacent: then pandas' group ids, numbered by first appearance, are
    monotonic."""
    runs = np.count_nonzero(codes[1:] != codes[:-1]) + (len(codes) > 0)
    return runs == np.count_nonzero(np.bincount(codes))


def _kahan_by_group(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    flat = values.tolist()
    sums = []
    for start, count in zip(starts.tolist(), counts.tolist()):
        total = compensation = 0.0
        for value in flat[start:start + count]:
            corrected = value - compensation
            added = total + corrected
            compensation = (added - total) - corrected
            total = added
        sums.append(total)
    return np.array(sums, dtype=np.float64)


def _kahan_by_position(values: np.ndarray, starts: np.ndarray, counts: np.ndarray, longest: int) -> np.ndarray:
    by_size = np.argsort(-counts, kind="stable")  # the groups still adding at step k are a prefix
    sizes, firsts = counts[by_size], starts[by_size]
    active = np.searchsorted(-sizes, -np.arange(longest), side="left")
    total, compensation = np.zeros(len(counts)), np.zeros(len(counts))
    for step, m in enumerate(active.tolist()):
        corrected = values[firsts[:m] + step] - compensation[:m]
        added = total[:m] + corrected
        compensation[:m] = (added - total[:m]) - corrected
        total[:m] = added
    sums = np.empty(len(counts))
    sums[by_size] = total
    return sums


def group_median(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per group 0..n-1 the median of its non-NaN ``values`` as pandas' group-by median takes it (the mean of the
    two middle values for an even count); NaN for a group without any."""
    kept = ~np.isnan(values)
    codes, values = codes[kept], values[kept]
    ordered = values[np.lexsort((values, codes))]
    counts = np.bincount(codes, minlength=n)
    starts = np.cumsum(counts) - counts
    median = np.full(n, np.nan)
    has = counts > 0
    low = ordered[(starts + (counts - 1) // 2)[has]]
    high = ordered[(starts + counts // 2)[has]]
    median[has] = np.where(counts[has] % 2 == 1, high, (high + low) / 2)
    return median


def first_of_groups(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows stably sorted by code, where each of the n non-empty groups starts in that order)."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n)
    return order, np.cumsum(counts) - counts
