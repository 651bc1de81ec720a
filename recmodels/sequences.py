"""Interaction events -> chronological item sequences of internal ids, reproducibly.

Internal id 0 is padding, so models can left-pad a batch with zeros and embedding row 0 can stay unused; real
items are 1..n_items in sorted order of their external id, so the same catalogue always gets the same ids.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

PAD = 0  # internal item id 0 is padding; real items are 1..n_items

_KEY_COLUMNS = {"user": "user_id", "basket": "basket_id"}


def _as_id_array(ids) -> np.ndarray:
    """External ids as a sortable numpy array (pandas strings come back as object arrays)."""
    array = np.asarray(ids)
    if array.dtype == object:
        array = array.astype(str)
    return array


@dataclass(frozen=True)
class ItemIndex:
    """External item id <-> internal id (1-based; 0 is PAD)."""

    item_ids: np.ndarray  # (n_items,) external ids, sorted; internal id i+1 <-> item_ids[i]

    @classmethod
    def from_ids(cls, ids) -> ItemIndex:
        """Index over the distinct ids, sorted so the mapping does not depend on event order."""
        return cls(np.unique(_as_id_array(ids)))

    def n_items(self) -> int:
        return len(self.item_ids)

    def to_internal(self, ids) -> np.ndarray:
        """Internal ids (int64); ids not in the index map to PAD so callers can drop them with ``!= PAD``."""
        ids = _as_id_array(ids)
        if len(self.item_ids) == 0 or len(ids) == 0:
            return np.zeros(len(ids), dtype=np.int64)
        position = np.searchsorted(self.item_ids, ids)
        clipped = np.minimum(position, len(self.item_ids) - 1)
        found = self.item_ids[clipped] == ids
        return np.where(found, clipped + 1, PAD).astype(np.int64)

    def to_external(self, internal) -> np.ndarray:
        internal = np.asarray(internal, dtype=np.int64)
        if np.any((internal < 1) | (internal > len(self.item_ids))):
            raise ValueError("internal ids must be in 1..n_items (PAD has no external id)")
        return self.item_ids[internal - 1]


@dataclass(frozen=True)
class SequenceConfig:
    """How events become sequences."""

    key: str = "user"  # what a sequence is: "user" (user_id) or "basket" (basket_id)
    max_length: int = 50  # most recent items kept per model input (applied by models / pad_left, not here)
    collapse_repeats: bool = False  # drop immediate repeats (a a b -> a b)
    tie_break: str = (
        "seeded"  # order of events sharing a timestamp: "seeded" (random, seeded) | "file" (source order)
    )
    seed: int = 42  # seed of the "seeded" tie-break


def build_sequences(
    events: pd.DataFrame, config: SequenceConfig = SequenceConfig(), item_index: ItemIndex | None = None
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], ItemIndex]:
    """Group events into chronological sequences of internal item ids.

    ``events`` has the key column (``user_id`` or ``basket_id``), ``item_id``, ``occurred_at`` and optionally
    ``source_row`` (file order; without it the frame's row order is the file order). Rows with a missing key
    (e.g. guest checkouts) are dropped before the index is built, as are items missing from a given
    ``item_index``. Sequences are kept
    at full length because splits need their tails; ``config.max_length`` is applied at model input.

    Returns ``(sequences, keys, timestamps, item_index)``: one int64 array and one datetime64 array per
    sequence, keys sorted ascending. The result does not depend on the order of the rows in ``events``
    except through the file order of the "file" tie-break.
    """
    if config.key not in _KEY_COLUMNS:
        raise ValueError(f"key must be one of {sorted(_KEY_COLUMNS)}, got {config.key!r}")
    if config.tie_break not in ("seeded", "file"):
        raise ValueError(f"tie_break must be 'seeded' or 'file', got {config.tie_break!r}")
    key_column = _KEY_COLUMNS[config.key]
    frame = pd.DataFrame(
        {
            "key": events[key_column].to_numpy(),
            "item": _as_id_array(events["item_id"].to_numpy()),
            "time": pd.to_datetime(events["occurred_at"]).to_numpy(dtype="datetime64[ns]"),
            "file_row": events["source_row"].to_numpy() if "source_row" in events else np.arange(len(events)),
        }
    )
    frame = frame[frame["key"].notna()]
    if item_index is None:
        item_index = ItemIndex.from_ids(frame["item"].to_numpy())
    frame["internal"] = item_index.to_internal(frame["item"].to_numpy())
    frame = frame[frame["internal"] != PAD]

    # A canonical order first, so the seeded tie-break draws the same permutation whatever the input order.
    frame = frame.sort_values(["key", "time", "internal", "file_row"], kind="stable").reset_index(drop=True)
    if config.tie_break == "seeded":
        frame["tie"] = np.random.default_rng(config.seed).permutation(len(frame))
    else:
        frame["tie"] = frame["file_row"].to_numpy()
    frame = frame.sort_values(["key", "time", "tie"], kind="stable")

    keys = frame["key"].to_numpy()
    items = frame["internal"].to_numpy(dtype=np.int64)
    times = frame["time"].to_numpy()
    if config.collapse_repeats and len(items):
        same_key = np.r_[False, keys[1:] == keys[:-1]]
        repeat = same_key & np.r_[False, items[1:] == items[:-1]]
        keys, items, times = keys[~repeat], items[~repeat], times[~repeat]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=np.int64)
    bounds = np.r_[starts, len(keys)]
    sequences = [items[a:b] for a, b in itertools.pairwise(bounds)]
    timestamps = [times[a:b] for a, b in itertools.pairwise(bounds)]
    return sequences, keys[starts], timestamps, item_index


def pad_left(histories: list[np.ndarray], max_length: int) -> np.ndarray:
    """(B, max_length) int64 batch of the last ``max_length`` items of each history, left-padded with PAD."""
    batch = np.full((len(histories), max_length), PAD, dtype=np.int64)
    for row, history in enumerate(histories):
        tail = np.asarray(history, dtype=np.int64)[-max_length:] if max_length > 0 else history[:0]
        if len(tail):
            batch[row, max_length - len(tail) :] = tail
    return batch
