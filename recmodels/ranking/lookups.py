"""Array primitives the feature modules share: keyed lookups, day arithmetic and the "never" sentinel."""

from __future__ import annotations

import numpy as np
import pandas as pd

TimeLike = pd.Timestamp | np.datetime64 | str

NEVER_DAYS = 10_000.0  # "days since" / "days between" with nothing to measure (never bought, < 2 orders)


def pair_lookup(
    left: np.ndarray,
    right: np.ndarray,
    values: np.ndarray,
    query_left: np.ndarray,
    query_right: np.ndarray,
    default: float,
) -> np.ndarray:
    """values[i] of the pair (left[i], right[i]) equal to each query pair, ``default`` where none is.

    Pairs of non-negative ints are packed into one int64 so a sorted search replaces a DataFrame merge.
    Query pairs with a negative member (unknown user, missing category) get ``default``.
    """
    out = np.full(len(query_left), default, dtype=np.float64)
    if len(left) == 0:
        return out
    width = int(max(right.max(), query_right.max(initial=0))) + 1
    codes = left.astype(np.int64) * width + right
    order = np.argsort(codes, kind="stable")
    codes, values = codes[order], values[order]
    valid = (query_left >= 0) & (query_right >= 0)
    query = query_left[valid].astype(np.int64) * width + query_right[valid]
    position = np.minimum(np.searchsorted(codes, query), len(codes) - 1)
    found = codes[position] == query
    out[np.flatnonzero(valid)[found]] = values[position[found]]
    return out


def lookup(values: np.ndarray, codes: np.ndarray, default: float) -> np.ndarray:
    """values[code], ``default`` where code is -1 (a user without events before the cut-off)."""
    safe = np.where(codes >= 0, codes, 0)
    return np.where(codes >= 0, values[safe] if len(values) else default, default).astype(np.float64)


def to_days(delta: np.ndarray) -> np.ndarray:
    return delta / np.timedelta64(1, "D")


def internal_item_ids(external: pd.Series, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(internal id per row as int64, whether the row's item is in ``item_ids``): internal id i + 1 is
    ``item_ids[i]``; rows outside it get 0 and False."""
    internal = pd.Series(np.arange(1, len(item_ids) + 1), index=pd.Index(np.asarray(item_ids).astype(str)))
    items = internal.reindex(external.astype(str).to_numpy()).to_numpy()
    known = ~np.isnan(items)
    return np.where(known, items, 0).astype(np.int64), known
