"""When to retrain and when to refresh recommendations: pure decisions with a readable reason.

``retrain_decision`` weighs new clean purchases and item-popularity drift against the last training's split;
``champion_moved`` says whether the registry's champion alias points somewhere new. The sensors in
``orchestration.defs.automation`` gather the inputs and act on the decisions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from orchestration.store.marts import KNOWN_CUSTOMER_PURCHASES
from orchestration.store.paths import env_float

# The purchases the models learn from: the same filter as the user_sequences asset.
CLEAN_PURCHASES = KNOWN_CUSTOMER_PURCHASES


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str
    new_share: float | None  # new rows / trained rows; None before the first training
    drift: float  # popularity drift as given; NaN when it was not measured


def popularity_drift(
    train_counts: Mapping[Any, float], recent_counts: Mapping[Any, float], top_k: int | None = None
) -> float:
    """Total variation distance between two item-popularity distributions: 0 identical, 1 disjoint.

    TV = half the L1 distance = the share of purchases that would have to move to other items for the
    recent popularity to match the training one. Chosen over Jensen-Shannon because it reads directly as a
    share (a threshold of 0.2 means "a fifth of the purchases moved") and is linear in the shift, where JS
    depends on how concentrated the catalogue is. An item missing from one side counts 0 there. With
    ``top_k``, only the ``top_k`` most popular training items (ties by id) are compared one by one and every
    other item falls into one bucket: with a long-tail catalogue and a few thousand recent purchases, per-item
    sampling noise alone would otherwise look like drift. NaN when either side has no purchase.
    """
    for counts in (train_counts, recent_counts):
        for item, count in counts.items():
            if not (math.isfinite(count) and count >= 0):
                raise ValueError(f"item {item!r} has count {count!r}; counts must be finite and >= 0")
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        head = set(sorted(train_counts, key=lambda item: (-train_counts[item], str(item)))[:top_k])
        other = object()  # a bucket key no item id can equal

        def bucketed(counts: Mapping[Any, float]) -> dict[Any, float]:
            merged: dict[Any, float] = {}
            for item, count in counts.items():
                key = item if item in head else other
                merged[key] = merged.get(key, 0) + count
            return merged

        train_counts, recent_counts = bucketed(train_counts), bucketed(recent_counts)
    train_total, recent_total = sum(train_counts.values()), sum(recent_counts.values())
    if train_total == 0 or recent_total == 0:
        return math.nan
    # |p - q| scaled by both totals: exact for integer counts, so identical is 0.0 and disjoint 1.0 exactly.
    items = set(train_counts) | set(recent_counts)
    scaled = sum(
        abs(train_counts.get(i, 0) * recent_total - recent_counts.get(i, 0) * train_total) for i in items
    )
    return min(1.0, scaled / (2 * train_total * recent_total))


def retrain_decision(
    new_rows: int,
    trained_rows: int | None,
    min_new_share: float = 0.1,
    drift: float = math.nan,
    max_drift: float = 0.2,
) -> RetrainDecision:
    """Retrain when new rows exceed ``min_new_share`` of the trained rows, or ``drift`` exceeds ``max_drift``.

    Both comparisons are strict, so a zero threshold still needs some new data or some drift. No training yet
    (``trained_rows`` None or 0): retrain as soon as any row exists. A NaN drift means "not measured" and
    never triggers.
    """
    if new_rows < 0 or (trained_rows is not None and trained_rows < 0):
        raise ValueError(f"row counts must be >= 0, got new_rows={new_rows}, trained_rows={trained_rows}")
    if not (math.isfinite(min_new_share) and min_new_share >= 0):
        raise ValueError(f"min_new_share must be a finite number >= 0, got {min_new_share!r}")
    if not (math.isfinite(max_drift) and max_drift >= 0):
        raise ValueError(f"max_drift must be a finite number >= 0, got {max_drift!r}")
    if not (math.isnan(drift) or 0 <= drift <= 1):
        raise ValueError(f"drift must be in [0, 1] or NaN (not measured), got {drift!r}")
    if not trained_rows:
        if new_rows > 0:
            reason = f"No model trained yet and {new_rows:,} clean purchases to train on."
            return RetrainDecision(True, reason, None, drift)
        return RetrainDecision(False, "No model trained yet, and no clean purchase to train on.", None, drift)
    share = new_rows / trained_rows
    by_share = share > min_new_share
    by_drift = drift > max_drift  # False for NaN
    share_text = (
        f"{new_rows:,} new purchases are {share:.1%} of the {trained_rows:,} trained on "
        f"({'above' if by_share else 'not above'} the {min_new_share:.1%} threshold)"
    )
    drift_text = "popularity drift not measured"
    if not math.isnan(drift):
        side = "above" if by_drift else "not above"
        drift_text = f"popularity drift {drift:.3f} ({side} the {max_drift:.3f} threshold)"
    verdict = "Retrain" if by_share or by_drift else "No retrain"
    return RetrainDecision(by_share or by_drift, f"{verdict}: {share_text}; {drift_text}.", share, drift)


@dataclass(frozen=True)
class RetrainSettings:
    """The retrain sensor's thresholds; the two decision thresholds can be set from the environment."""

    min_new_share: float = 0.1  # retrain when new purchases exceed this share of those trained on
    max_drift: float = 0.2  # retrain when popularity drift (total variation, 0..1) exceeds this
    drift_window_days: int = 30  # training-side popularity: the last N days up to the split's last event
    drift_min_events: int = 1000  # fewer new purchases than this: drift is not measured (sampling noise)
    drift_top_items: int = 100  # items compared one by one; the rest of the catalogue is one bucket

    @classmethod
    def from_env(cls) -> "RetrainSettings":
        return cls(
            min_new_share=env_float("RECSYS_RETRAIN_MIN_NEW_SHARE", cls.min_new_share),
            max_drift=env_float("RECSYS_RETRAIN_MAX_DRIFT", cls.max_drift),
        )


@dataclass(frozen=True)
class RetrainInputs:
    """What the warehouse says now, relative to the split of the last training."""

    trained_rows: int | None  # clean purchases up to the split's last event; None without a split
    new_rows: int  # clean purchases after it (all of them without a split)
    latest: datetime | None  # the newest clean purchase
    drift: float  # popularity drift between the training window and the new purchases; NaN if not measured


def retrain_inputs(
    con: duckdb.DuckDBPyConnection, last_event: datetime | None, settings: RetrainSettings
) -> RetrainInputs:
    """Count clean purchases before / after ``last_event`` and measure popularity drift (read-only queries).

    The trained rows are counted now rather than read from the split, so both counts use the same filter;
    they equal what the split was built from unless backdated rows were loaded since, which no count "after
    the last event" can see (the weekly retrain schedule covers that case).
    """
    table = f"marts.fct_interactions where {CLEAN_PURCHASES}"
    if last_event is None:
        total, latest = con.execute(f"select count(*), max(occurred_at) from {table}").fetchone()
        return RetrainInputs(None, int(total), latest, math.nan)
    trained, new, latest = con.execute(
        "select count(*) filter (where occurred_at <= $last), count(*) filter (where occurred_at > $last), "
        f"max(occurred_at) from {table}",
        {"last": last_event},
    ).fetchone()
    drift = math.nan
    if new >= settings.drift_min_events:
        rows = con.execute(
            "select item_id, count(*) filter (where occurred_at <= $last), "
            "count(*) filter (where occurred_at > $last) "
            f"from {table} and occurred_at > $start group by item_id",
            {"last": last_event, "start": last_event - timedelta(days=settings.drift_window_days)},
        ).fetchall()
        trained_window = {item: n for item, n, _ in rows if n}
        recent = {item: n for item, _, n in rows if n}
        drift = popularity_drift(trained_window, recent, settings.drift_top_items)
    return RetrainInputs(int(trained), int(new), latest, drift)


@dataclass(frozen=True)
class ChampionDecision:
    moved: bool
    reason: str
    cursor: str  # the version to remember ("" when there is no champion)


def _version(value: int | str | None) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def champion_moved(previous_version: int | str | None, current_version: int | str | None) -> ChampionDecision:
    """Whether the champion alias points somewhere new since ``previous_version`` (None: none seen yet).

    A first champion counts as moved (recommendations then surely match it); a rollback is a move like a
    promotion; a removed alias is not (there is nothing new to recommend with, so the old ones stay).
    """
    previous, current = _version(previous_version), _version(current_version)
    if current is None:
        if previous is None:
            return ChampionDecision(False, "No champion yet.", "")
        return ChampionDecision(False, f"The champion alias (was version {previous}) is gone; "
                                       "the current recommendations stay.", "")
    if previous is None:
        return ChampionDecision(True, f"Champion version {current} is new to this sensor.", current)
    if previous == current:
        return ChampionDecision(False, f"The champion is still version {current}.", current)
    return ChampionDecision(True, f"The champion moved from version {previous} to {current}.", current)
