"""Train / validation / test splits of item sequences, built so that no evaluated target leaks into training.

Three protocols: leave-one-out (per sequence: last item tests, second-to-last validates), a global temporal
split (one cut-off for everybody, so no model ever trains on an event later than one it is evaluated on), whose
cut-offs ``split_cutoffs`` counts in calendar days back from the last event (``SplitWindows``), and
leave-last-basket-out (per customer: the last basket tests, the one before validates, each row with its own
cut-off), for shops whose customers rarely return within any window. ``choose_windows`` picks between the last two.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recmodels.sequences import SequenceConfig, build_sequences, purchased_items, purchases

PHASES = ("validation", "test")  # models fit on split.train score validation; on split.train_for_test, test
LEAVE_LAST_BASKET_OUT = "leave-last-basket-out"  # the per-customer split's name (rule and protocol)


@dataclass(frozen=True)
class SplitWindows:
    """Calendar windows of a temporal split that ends at the data's last day."""

    test_days: int = 30  # test window: the last N calendar days of the data
    validation_days: int = 30  # validation window: the N calendar days before the test window


@dataclass(frozen=True)
class EvalSet:
    """Rows to evaluate: what the model sees and what it should rank high."""

    histories: list[
        np.ndarray
    ]  # model input per row (internal ids, chronological, full length; models truncate)
    targets: list[np.ndarray]  # distinct target internal ids per row, sorted (>= 1 each)
    keys: np.ndarray  # sequence key (user or basket id) per row
    # Each row's own cut-off (datetime64[ns]) when rows have different ones (leave-last-basket-out); None when
    # one cut-off serves every row (the split's info says which).
    cutoffs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.histories)


@dataclass(frozen=True)
class Split:
    """Everything a model needs to be tuned on validation and then reported on test."""

    n_items: int  # catalogue size; internal ids are 1..n_items
    train: list[np.ndarray]  # sequences the models learn from when scored on validation
    validation: EvalSet  # rows for tuning
    test: EvalSet  # rows for the final report; models are refit on train_for_test first
    train_for_test: list[np.ndarray]  # training sequences for the final test fit (train + validation data)
    name: str  # protocol name, for logs and tables
    item_ids: np.ndarray | None = None  # external id of internal id i + 1 at position i, when known
    # Event times aligned with ``train`` / ``train_for_test``, when known: training may reorder events that
    # share a timestamp, whose recorded order is arbitrary.
    train_timestamps: list[np.ndarray] | None = None
    train_for_test_timestamps: list[np.ndarray] | None = None


def leave_one_out(
    sequences: list[np.ndarray],
    n_items: int | None = None,
    keys: np.ndarray | None = None,
    name: str = "leave_one_out",
    item_ids: np.ndarray | None = None,
    timestamps: list[np.ndarray] | None = None,
) -> Split:
    """Per sequence: the last item is the test target, the second-to-last the validation target.

    Sequences with fewer than 3 items cannot give both a validation and a test row with a non-empty history,
    so they are used whole for training only. ``n_items`` defaults to the largest id seen. ``timestamps``
    (one array per sequence) are cut the same way into the split's training timestamps.
    """
    sequences = [np.asarray(s, dtype=np.int64) for s in sequences]
    if n_items is None:
        n_items = max((int(s.max()) for s in sequences if len(s)), default=0)
    keys = np.arange(len(sequences)) if keys is None else np.asarray(keys)
    evaluated = [i for i, s in enumerate(sequences) if len(s) >= 3]
    validation = EvalSet(
        histories=[sequences[i][:-2] for i in evaluated],
        targets=[sequences[i][-2:-1] for i in evaluated],
        keys=keys[evaluated],
    )
    test = EvalSet(
        histories=[sequences[i][:-1] for i in evaluated],
        targets=[sequences[i][-1:] for i in evaluated],
        keys=keys[evaluated],
    )
    short_index = [i for i, s in enumerate(sequences) if 0 < len(s) < 3]

    def cut(arrays: list[np.ndarray], drop: int) -> list[np.ndarray]:
        return [arrays[i][:-drop] for i in evaluated] + [arrays[i] for i in short_index]

    return Split(
        n_items=n_items,
        train=cut(sequences, 2),
        validation=validation,
        test=test,
        train_for_test=cut(sequences, 1),
        name=name,
        item_ids=item_ids,
        train_timestamps=None if timestamps is None else cut(timestamps, 2),
        train_for_test_timestamps=None if timestamps is None else cut(timestamps, 1),
    )


def _window_rows(sequences, timestamps, keys, cutoff, end, n_items: int, per_row_cutoffs: bool = False) -> EvalSet:
    """Rows of returning sequences (>= 1 purchase before the cut-off) with >= 1 purchase in [cut-off, end).

    Histories keep every behaviour before the cut-off (tokens); targets are purchases only, so a shop's views
    change what models see, never which customers are evaluated or on what. ``cutoff`` and ``end`` are one time for
    every sequence or one per sequence (NaT: no row for that sequence); ``per_row_cutoffs`` keeps each row's
    cut-off in the ``EvalSet``."""
    cutoffs, ends = (np.broadcast_to(np.asarray(t, dtype="datetime64[ns]"), (len(sequences),)) for t in (cutoff, end))
    histories, targets, row_keys, row_cutoffs = [], [], [], []
    for sequence, times, key, start, stop in zip(sequences, timestamps, keys, cutoffs, ends):
        if np.isnat(start):
            continue
        history = sequence[times < start]
        bought = purchased_items(sequence[(times >= start) & (times < stop)], n_items)
        if len(bought) and len(purchased_items(history, n_items)):
            histories.append(history)
            targets.append(np.unique(bought))  # repeat purchases stay targets
            row_keys.append(key)
            row_cutoffs.append(start)
    return EvalSet(histories=histories, targets=targets, keys=np.asarray(row_keys, dtype=keys.dtype),
                   cutoffs=np.asarray(row_cutoffs, dtype="datetime64[ns]") if per_row_cutoffs else None)


def _before(sequences, timestamps, cutoff) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each sequence's events before its cut-off (one time for all, or one per sequence), empty ones left out."""
    cutoffs = np.broadcast_to(np.asarray(cutoff, dtype="datetime64[ns]"), (len(sequences),))
    kept = [(s[t < c], t[t < c]) for s, t, c in zip(sequences, timestamps, cutoffs)]
    kept = [pair for pair in kept if len(pair[0])]
    return [s for s, _ in kept], [t for _, t in kept]


def temporal_split(
    events: pd.DataFrame,
    config: SequenceConfig,
    test_cutoff,
    validation_cutoff,
    test_end=None,
    validation_end=None,
    name: str = "temporal",
) -> Split:
    """Global time cut-offs; validation in [validation_cutoff, validation_end or test_cutoff), test in
    [test_cutoff, test_end or the end of data).

    Validation models train on events before ``validation_cutoff``; test models on events before
    ``test_cutoff``. A row is a returning sequence (>= 1 event before the cut-off) with >= 1 event in the
    window; its targets are the distinct items of the window (items bought before count again: buying again
    is a real recommendation), its history everything before the cut-off. The catalogue is every item in
    ``events``, so items first seen after a cut-off are ranked too (and are, honestly, hard to hit).
    """
    times = {
        "validation_cutoff": pd.Timestamp(validation_cutoff),
        "test_cutoff": pd.Timestamp(test_cutoff),
        "validation_end": pd.Timestamp(validation_end)
        if validation_end is not None
        else pd.Timestamp(test_cutoff),
        "test_end": pd.Timestamp(test_end) if test_end is not None else pd.Timestamp.max,
    }
    if not times["validation_cutoff"] < times["validation_end"] <= times["test_cutoff"] < times["test_end"]:
        raise ValueError(f"need validation_cutoff < validation_end <= test_cutoff < test_end, got {times}")
    at = {name_: np.datetime64(value.to_datetime64(), "ns") for name_, value in times.items()}
    # Collapsing repeats commutes with cutting at a time (a prefix of a collapsed sequence is the collapsed
    # prefix), so one pass over all events serves every cut-off.
    sequences, keys, timestamps, item_index = build_sequences(events, config)
    n_items = item_index.n_items()
    validation = _window_rows(sequences, timestamps, keys, at["validation_cutoff"], at["validation_end"], n_items)
    test = _window_rows(sequences, timestamps, keys, at["test_cutoff"], at["test_end"], n_items)

    train, train_times = _before(sequences, timestamps, at["validation_cutoff"])
    train_for_test, train_for_test_times = _before(sequences, timestamps, at["test_cutoff"])
    return Split(
        n_items=item_index.n_items(),
        train=train,
        validation=validation,
        test=test,
        train_for_test=train_for_test,
        name=name,
        item_ids=item_index.item_ids,
        train_timestamps=train_times,
        train_for_test_timestamps=train_for_test_times,
    )


_END_OF_TIME = np.datetime64(pd.Timestamp.max.to_datetime64(), "ns")


def basket_starts(events: pd.DataFrame, key: str = "user_id") -> pd.DataFrame:
    """One row per (customer, basket): ``key`` and ``start`` (its first event's time), sorted by both. Events
    without a ``basket_id`` (or a log without the column) count one basket per distinct time."""
    times = pd.to_datetime(events["occurred_at"])
    basket = events["basket_id"].astype("string") if "basket_id" in events else pd.Series(pd.NA, index=events.index,
                                                                                          dtype="string")
    basket = basket.fillna("@" + times.astype("string"))  # a missing basket: its own time names it
    starts = pd.DataFrame({"key": events[key].to_numpy(), "basket": basket.to_numpy(), "start": times.to_numpy()})
    starts = starts[starts["key"].notna()].groupby(["key", "basket"], sort=False)["start"].min().reset_index()
    starts = starts.drop_duplicates(["key", "start"])  # baskets that start together are one visit
    return starts.sort_values(["key", "start"], kind="stable")[["key", "start"]].rename(columns={"key": key})


def last_basket_cutoffs(events: pd.DataFrame, key: str = "user_id") -> pd.DataFrame:
    """Per customer, indexed by ``key``: ``test_cutoff`` (the start of the last basket; NaT with one basket),
    ``validation_cutoff`` (the start of the one before; NaT with fewer than three) and ``baskets``."""
    starts = basket_starts(events, key)
    grouped = starts.groupby(key, sort=True)["start"]
    position_from_end = grouped.cumcount(ascending=False)
    baskets = grouped.size()
    out = pd.DataFrame({"baskets": baskets})
    for name, back, needed in (("test_cutoff", 0, 2), ("validation_cutoff", 1, 3)):
        at = starts.loc[position_from_end.to_numpy() == back].set_index(key)["start"]
        out[name] = at.where(baskets.reindex(at.index) >= needed).reindex(out.index)
    return out


def leave_last_basket_out(events: pd.DataFrame, config: SequenceConfig, name: str = LEAVE_LAST_BASKET_OUT) -> Split:
    """Per customer: the last basket is the test row, the basket before it the validation row.

    A test row needs two baskets, a validation row three. Its cut-off is the start of its basket: the history
    and every model's training data for that phase stop there (``EvalSet.cutoffs``), so a customer's held-out
    baskets are never trained on. Customers with a single basket only train. Events are ``temporal_split``'s.
    """
    if config.key != "user":
        raise ValueError(f"leave-last-basket-out splits customers' sequences (key='user'), got key={config.key!r}")
    sequences, keys, timestamps, item_index = build_sequences(events, config)
    n_items = item_index.n_items()
    cutoffs = last_basket_cutoffs(purchases(events)).reindex(pd.Index(keys))
    test_cut = cutoffs["test_cutoff"].to_numpy(dtype="datetime64[ns]")
    validation_cut = cutoffs["validation_cutoff"].to_numpy(dtype="datetime64[ns]")
    test = _window_rows(sequences, timestamps, keys, test_cut, _END_OF_TIME, n_items, per_row_cutoffs=True)
    validation = _window_rows(sequences, timestamps, keys, validation_cut, test_cut, n_items, per_row_cutoffs=True)
    # Validation-phase training stops before each customer's first held-out basket: the validation basket, or
    # with two baskets the test basket; one-basket customers train whole.
    held_out = np.where(np.isnat(validation_cut), test_cut, validation_cut)
    train, train_times = _before(sequences, timestamps, np.where(np.isnat(held_out), _END_OF_TIME, held_out))
    train_for_test, train_for_test_times = _before(sequences, timestamps,
                                                   np.where(np.isnat(test_cut), _END_OF_TIME, test_cut))
    return Split(
        n_items=item_index.n_items(), train=train, validation=validation, test=test, train_for_test=train_for_test,
        name=name, item_ids=item_index.item_ids, train_timestamps=train_times,
        train_for_test_timestamps=train_for_test_times,
    )


def sequence_cutoffs(split: Split, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(validation, test) cut-off of each sequence of ``keys`` from ``split``'s per-row ones: where a sequence
    has no validation row its test cut-off, and where it has no test row the end of time (it only trains)."""
    validation, test = (
        pd.Series(rows.cutoffs, index=pd.Index(rows.keys)).reindex(pd.Index(keys)).to_numpy(dtype="datetime64[ns]")
        for rows in (split.validation, split.test))
    test = np.where(np.isnat(test), _END_OF_TIME, test)
    return np.where(np.isnat(validation), test, validation), test


def split_cutoffs(last_event, test_days: int, validation_days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(validation_cutoff, test_cutoff) at midnight: the test window is the last ``test_days`` calendar days
    of the data (the day of ``last_event`` included), the validation window the ``validation_days`` before."""
    if test_days < 1 or validation_days < 1:
        raise ValueError(f"test_days and validation_days must be >= 1, got {test_days} and {validation_days}")
    end = pd.Timestamp(last_event).normalize() + pd.Timedelta(days=1)
    test_cutoff = end - pd.Timedelta(days=test_days)
    return test_cutoff - pd.Timedelta(days=validation_days), test_cutoff


@dataclass(frozen=True)
class SplitRule:
    """How the evaluation windows are chosen from the data (``choose_windows``); README, "Splits that fit the data"."""

    min_test_customers: int = 500  # a window pair is enough when each window holds this many returning customers ...
    small_shop_share: float = 0.2  # ... or, in a smaller shop, this share of its customers who bought more than once,
    min_holdout_customers: int = 100  # but never fewer than this
    window_days: tuple[int, ...] = (30, 45, 60, 90, 120, 180, 270, 365)  # window lengths tried, shortest first
    short_window_days: tuple[int, ...] = (21, 14, 7)  # for a log of a few weeks: the longest that fits is taken
    max_holdout_share: float = 0.5  # the two windows together take at most this share of the data's days
    min_evaluable_customers: int = 30  # fewer in the best windows: too small to evaluate reliably (said, not refused)
    # When no window pair holds required_customers, hold out each customer's last basket instead
    # (leave_last_basket_out) if that evaluates more customers than the best windows.
    leave_last_basket_out: bool = True


@dataclass(frozen=True)
class WindowChoice:
    """The windows chosen, the count each one tried gave, and why, in words."""

    test_days: int | None  # None under leave-last-basket-out
    validation_days: int | None
    required_customers: int
    test_customers: int
    validation_customers: int
    tried: tuple[tuple[int, int, int], ...]  # (days, test customers, validation customers) per length tried
    enough: bool  # the chosen split evaluates enough customers: required_customers (temporal) or all who return
    reason: str
    rule: str = "temporal"  # or LEAVE_LAST_BASKET_OUT

    def as_info(self) -> dict[str, Any]:
        return {"rule": self.rule, "test_days": self.test_days, "validation_days": self.validation_days,
                "required_customers": self.required_customers, "test_customers": self.test_customers,
                "validation_customers": self.validation_customers, "enough": self.enough,
                "tried": [list(t) for t in self.tried], "reason": self.reason}


def returning_customers(events: pd.DataFrame, cutoff, end=None, key: str = "user_id") -> int:
    """Customers with an event before ``cutoff`` and one in [cutoff, end): the rows a temporal window evaluates."""
    times = events["occurred_at"]
    before = set(events.loc[times < cutoff, key])
    in_window = times >= cutoff if end is None else (times >= cutoff) & (times < end)
    return len(before & set(events.loc[in_window, key]))


def choose_windows(events: pd.DataFrame, rule: SplitRule = SplitRule(), key: str = "user_id") -> WindowChoice:
    """The shortest window length (test = validation = N days, ending at the last event's day) whose windows
    both hold the rule's number of returning customers; else the length that holds the most, when that reaches
    ``min_evaluable_customers``. Windows never take more than
    ``max_holdout_share`` of the data's days, so the models keep history to learn from. Below
    ``min_evaluable_customers`` the windows that hold the most are still returned, with a reason that says the
    shop is too small to evaluate reliably."""
    first, last = events["occurred_at"].min(), events["occurred_at"].max()
    span_days = (pd.Timestamp(last).normalize() - pd.Timestamp(first).normalize()).days + 1
    repeat = int((events.groupby(key)["basket_id"].nunique() > 1).sum()) if "basket_id" in events else \
        int((events.groupby(key)["occurred_at"].nunique() > 1).sum())
    required = max(rule.min_holdout_customers, min(rule.min_test_customers, int(np.ceil(rule.small_shop_share * repeat))))
    fits = [d for d in rule.window_days if 2 * d <= rule.max_holdout_share * span_days]
    short = [d for d in sorted(rule.short_window_days, reverse=True) if 2 * d <= rule.max_holdout_share * span_days]
    lengths = fits or short[:1] or [min(rule.short_window_days)]
    tried = []
    for days in lengths:
        validation_cutoff, test_cutoff = split_cutoffs(last, days, days)
        counts = (days, returning_customers(events, test_cutoff, key=key),
                  returning_customers(events, validation_cutoff, test_cutoff, key=key))
        tried.append(counts)
        if min(counts[1:]) >= required:
            return WindowChoice(days, days, required, counts[1], counts[2], tuple(tried), True,
                                f"{days}-day windows: {counts[1]:,} test and {counts[2]:,} validation customers, "
                                f"at least the {required:,} the rule asks for.")
    days, test, validation = max(tried, key=lambda t: (min(t[1:]), -t[0]))
    summary = "; ".join(f"{d} days: {t:,} test / {v:,} validation" for d, t, v in tried)
    if rule.leave_last_basket_out:
        per_customer = last_basket_choice(events, rule, key, tried=tuple(tried), required=required,
                                          why=f"Customers rarely return within a window ({summary}; the rule asks for "
                                              f"{required:,}), so each customer's last basket is held out instead")
        if min(per_customer.test_customers, per_customer.validation_customers) > min(test, validation):
            return per_customer
    if min(test, validation) < rule.min_evaluable_customers:
        # Still evaluated, so that the shop gets the best of what it has (often popularity); the reason says
        # how little the metrics rest on.
        return WindowChoice(days, days, required, test, validation, tuple(tried), False,
                            f"Too few returning customers to evaluate reliably: {repeat:,} customers bought more "
                            f"than once over {span_days:,} days, and the best windows hold {min(test, validation):,} "
                            f"({summary}); {rule.min_evaluable_customers} per window make an evaluation. The "
                            f"metrics' intervals show how little they rest on.")
    return WindowChoice(days, days, required, test, validation, tuple(tried), False,
                        f"{days}-day windows hold the most returning customers ({test:,} test, {validation:,} "
                        f"validation), fewer than the {required:,} the rule asks for: metrics carry wide intervals.")


def last_basket_choice(events: pd.DataFrame, rule: SplitRule = SplitRule(), key: str = "user_id",
                       tried: tuple[tuple[int, int, int], ...] = (), required: int = 0,
                       why: str = "Configured: each customer's last basket is held out") -> WindowChoice:
    """The leave-last-basket-out choice for ``events``, with the customers it evaluates and ``why`` it was taken."""
    per_customer = last_basket_cutoffs(events, key)
    test, validation = (int(per_customer[c].notna().sum()) for c in ("test_cutoff", "validation_cutoff"))
    evaluable = min(test, validation) >= rule.min_evaluable_customers
    reason = (f"{why}: {test:,} test customers (two baskets or more) and {validation:,} validation customers "
              f"(three or more), every one who returned.")
    if not evaluable:
        reason += (f" Too few to evaluate reliably: {rule.min_evaluable_customers} make an evaluation. The metrics' "
                   f"intervals show how little they rest on.")
    return WindowChoice(None, None, required, test, validation, tried, evaluable, reason, rule=LEAVE_LAST_BASKET_OUT)


def split_problem(split: Split, n_events: int, first_event, last_event, validation_cutoff, test_cutoff) -> str | None:
    """Why ``split`` cannot train and evaluate a model, in one paragraph; None when it can. Cut-offs of None:
    each row has its own (leave-last-basket-out)."""
    trainable = sum(len(s) >= 2 for s in split.train)
    counts = {
        "training sequences with 2+ items before the validation cut-off": trainable,
        "validation rows": len(split.validation),
        "test rows": len(split.test),
    }
    empty = [name for name, count in counts.items() if count == 0]
    if not empty:
        return None
    if validation_cutoff is None or test_cutoff is None:
        cut = "each customer's last two baskets held out"
        advice = "Load more history: a customer needs three baskets to give a validation row"
    else:
        cut = f"validation cut-off {validation_cutoff:%Y-%m-%d}, test cut-off {test_cutoff:%Y-%m-%d}"
        advice = "Shorten test_days / validation_days or load more history"
    return (
        f"Too few events to split: {n_events:,} purchase events of known customers from {first_event} to {last_event}; "
        f"{cut} give " + ", ".join(f"{count:,} {name}" for name, count in counts.items())
        + f". Missing: {', '.join(empty)}. {advice}."
    )


@dataclass(frozen=True)
class StoredSplit:
    """A ``Split`` with the timestamps of its training events and how it was made."""

    split: Split
    train_times: list[np.ndarray]  # aligned with split.train
    train_for_test_times: list[np.ndarray]  # aligned with split.train_for_test
    info: dict[str, Any]  # sequence config, cut-offs, data version, counts (JSON-able)
    content_hash: str = ""  # sha256 of the arrays: equal for equal splits, whenever and wherever written

    def training(self, phase: str) -> tuple[list[np.ndarray], list[np.ndarray], EvalSet]:
        """(training sequences, their timestamps, rows to score) of ``phase``."""
        if phase == "validation":
            return self.split.train, self.train_times, self.split.validation
        if phase == "test":
            return self.split.train_for_test, self.train_for_test_times, self.split.test
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")

    def cutoff(self, phase: str) -> pd.Timestamp | np.ndarray:
        """The cut-off of ``phase``'s rows: one time, or one per row (datetime64[ns]) when each has its own."""
        rows = self.training(phase)[2]
        return rows.cutoffs if rows.cutoffs is not None else pd.Timestamp(self.info[f"{phase}_cutoff"])


def _pack(arrays: Sequence[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Ragged arrays as (values, offsets): array i is values[offsets[i]:offsets[i + 1]]."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    values = np.concatenate([np.asarray(a, dtype=dtype) for a in arrays]) if len(arrays) else np.array([], dtype)
    return values.astype(dtype, copy=False), offsets


def _unpack(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def save_split(stored: StoredSplit, path: Path) -> str:
    """Write ``stored`` to ``path`` (``.npz``, no pickles), replacing it atomically; returns its content hash."""
    split = stored.split
    arrays: dict[str, np.ndarray] = {"item_ids": np.asarray(split.item_ids, dtype=str)}
    ragged = {
        "train": (split.train, np.int64),
        "train_times": (stored.train_times, "datetime64[ns]"),
        "train_for_test": (split.train_for_test, np.int64),
        "train_for_test_times": (stored.train_for_test_times, "datetime64[ns]"),
    }
    for name, eval_set in (("validation", split.validation), ("test", split.test)):
        ragged[f"{name}_histories"] = (eval_set.histories, np.int64)
        ragged[f"{name}_targets"] = (eval_set.targets, np.int64)
        arrays[f"{name}_keys"] = np.asarray(eval_set.keys, dtype=str)
        if eval_set.cutoffs is not None:
            arrays[f"{name}_cutoffs"] = np.asarray(eval_set.cutoffs, dtype="datetime64[ns]")
    for name, (sequences, dtype) in ragged.items():
        arrays[f"{name}_values"], arrays[f"{name}_offsets"] = _pack(sequences, dtype)
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode() + arrays[name].dtype.str.encode() + arrays[name].tobytes())
    meta = {"n_items": split.n_items, "name": split.name, "info": stored.info, "content_hash": digest.hexdigest()}
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)
    return meta["content_hash"]


def load_split(path: Path) -> StoredSplit:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: no split was saved there (save_split).")
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta_json"]))

    def ragged(name: str) -> list[np.ndarray]:
        return _unpack(arrays[f"{name}_values"], arrays[f"{name}_offsets"])

    def eval_set(name: str) -> EvalSet:
        return EvalSet(histories=ragged(f"{name}_histories"), targets=ragged(f"{name}_targets"),
                       keys=arrays[f"{name}_keys"], cutoffs=arrays.get(f"{name}_cutoffs"))

    split = Split(
        n_items=int(meta["n_items"]),
        train=ragged("train"),
        validation=eval_set("validation"),
        test=eval_set("test"),
        train_for_test=ragged("train_for_test"),
        name=meta["name"],
        item_ids=arrays["item_ids"],
    )
    return StoredSplit(split, ragged("train_times"), ragged("train_for_test_times"), meta["info"], meta["content_hash"])
