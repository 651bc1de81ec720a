"""Interaction events -> chronological item sequences of internal ids, reproducibly.

Internal id 0 is padding, so models can left-pad a batch with zeros and embedding row 0 can stay unused; real
items are 1..n_items in sorted order of their external id, so the same catalogue always gets the same ids.

Sequences may hold every behaviour, not only purchases. An event is then a *token*: ``item + (n_items + 1) * code``,
``code`` its behaviour's index in ``EVENT_TYPES``. Purchases have code 0, so a purchases-only sequence is its own
token sequence and every model that reads purchases reads it unchanged; ``purchased_items`` keeps the purchases of
a token sequence, ``decode`` splits tokens into items and codes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

PAD = 0  # internal item id 0 is padding; real items are 1..n_items
INPUTS = ("all", "purchases")  # SequenceConfig.inputs
# Behaviours a sequence can hold, by code. The first is what models predict and evaluation scores; the others are
# inputs only. fct_interactions.event_type holds these canonical names (the shop's own are mapped by dbt).
EVENT_TYPES = ("purchase", "view", "cart", "favourite")

_KEY_COLUMNS = {"user": "user_id", "basket": "basket_id"}


def encode(items: np.ndarray, codes: np.ndarray, n_items: int) -> np.ndarray:
    """Tokens of internal ``items`` with behaviour ``codes`` (indices into ``EVENT_TYPES``)."""
    return np.asarray(items, dtype=np.int64) + (n_items + 1) * np.asarray(codes, dtype=np.int64)


def decode(tokens: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(items, codes) of ``tokens``; PAD decodes to item PAD with code 0."""
    tokens = np.asarray(tokens, dtype=np.int64)
    return tokens % (n_items + 1), tokens // (n_items + 1)


def purchased_items(tokens: np.ndarray, n_items: int) -> np.ndarray:
    """The purchases (code 0) of a token sequence, in order: what purchase-only models and features read."""
    tokens = np.asarray(tokens, dtype=np.int64)
    return tokens[tokens <= n_items]


def holds_behaviour(sequences, n_items: int) -> bool:
    """Whether any token sequence holds an event other than a purchase."""
    return any(len(s) and int(np.max(s)) > n_items for s in sequences)


def purchases(events: pd.DataFrame) -> pd.DataFrame:
    """The target behaviour's events of a log that may hold others (all of a log without ``event_type``)."""
    return events[events["event_type"] == EVENT_TYPES[0]] if "event_type" in events else events


def behaviour_codes(event_types) -> np.ndarray:
    """Each event type's index in ``EVENT_TYPES``; a ValueError names any type outside it."""
    names = np.asarray(event_types, dtype=object)
    known = {name: code for code, name in enumerate(EVENT_TYPES)}
    unknown = sorted({str(name) for name in pd.unique(names) if name not in known})
    if unknown:
        raise ValueError(f"event_type {', '.join(map(repr, unknown))} is not one of {', '.join(EVENT_TYPES)}")
    return pd.Series(names, dtype=object).map(known).to_numpy(np.int64)


def reindex_tokens(tokens: np.ndarray, to_other: np.ndarray, n_items: int, n_other: int) -> np.ndarray:
    """``tokens`` over ``n_items`` items as tokens of another index of ``n_other`` items; ``to_other[i]`` is item i's
    id there (0 where it has none: those events are left out)."""
    items, codes = decode(tokens, n_items)
    other = np.asarray(to_other, dtype=np.int64)[items]
    return encode(other, codes, n_other)[other != PAD]


def token_histories(events: pd.DataFrame, n_items: int) -> dict[object, np.ndarray]:
    """Per ``user_key``, its events' tokens oldest first (ties by token, so the same events give the same history);
    ``events`` holds ``user_key``, ``item`` (internal id), ``occurred_at`` and ``event_type``."""
    tokens = encode(events["item"].to_numpy(np.int64), behaviour_codes(events["event_type"].to_numpy()), n_items)
    frame = pd.DataFrame({"key": events["user_key"].to_numpy(), "time": events["occurred_at"].to_numpy(),
                          "token": tokens}).sort_values(["key", "time", "token"], kind="stable")
    token_array = frame["token"].to_numpy(np.int64)
    return {key: token_array[rows] for key, rows in frame.groupby("key", sort=False).indices.items()}


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
    inputs: str = "all"  # events kept when the log has event_type: "all" behaviours, or only "purchases"


def build_sequences(
    events: pd.DataFrame, config: SequenceConfig = SequenceConfig(), item_index: ItemIndex | None = None
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], ItemIndex]:
    """Group events into chronological sequences of internal item ids.

    ``events`` has the key column (``user_id`` or ``basket_id``), ``item_id``, ``occurred_at`` and optionally
    ``source_row`` (file order; without it the frame's row order is the file order), and optionally
    ``event_type``: then every behaviour is kept, as tokens (``encode``), and the item index covers items only
    viewed too. Rows with a missing key
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
    if config.inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {config.inputs!r}")
    if config.inputs == "purchases":
        events = purchases(events)
    key_column = _KEY_COLUMNS[config.key]
    frame = pd.DataFrame(
        {
            "key": events[key_column].to_numpy(),
            "item": _as_id_array(events["item_id"].to_numpy()),
            "time": pd.to_datetime(events["occurred_at"]).to_numpy(dtype="datetime64[ns]"),
            "file_row": events["source_row"].to_numpy() if "source_row" in events else np.arange(len(events)),
            "code": behaviour_codes(events["event_type"].to_numpy()) if "event_type" in events else 0,
        }
    )
    frame = frame[frame["key"].notna()]
    if item_index is None:
        item_index = ItemIndex.from_ids(frame["item"].to_numpy())
    frame["internal"] = item_index.to_internal(frame["item"].to_numpy())
    frame = frame[frame["internal"] != PAD]

    # A canonical order first, so the seeded tie-break draws the same permutation whatever the input order.
    frame["internal"] = encode(frame["internal"].to_numpy(), frame["code"].to_numpy(), item_index.n_items())
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
