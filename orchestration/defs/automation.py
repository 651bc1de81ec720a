"""Schedules and sensors, and the pure decisions behind them (should this sensor fire, and why).

The decision functions take plain values and return frozen dataclasses with a readable ``reason``; the sensors
only gather those values (a folder listing, warehouse counts, the registry's champion) and turn a decision
into run requests or a skip reason. Jobs are targeted by name; ``definitions.py`` defines them.

Settings come from the environment when a sensor is evaluated, never at import:

- ``RECSYS_LANDING_SOURCE``: ``auto`` (default), ``online_retail`` or ``generic``; see ``landing_kind``.
- ``RECSYS_LANDING_SETTLE_SECONDS``: 60; a landed entry must be unchanged this long before it is ingested.
- ``RECSYS_RETRAIN_MIN_NEW_SHARE``: 0.1; retrain when new purchases exceed this share of those trained on.
- ``RECSYS_RETRAIN_MAX_DRIFT``: 0.2; retrain when item-popularity drift (total variation) exceeds this.

No ``from __future__ import annotations``: Dagster reads the sensors' resource annotations at definition time.
"""

import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from orchestration.ingest.readers import file_suffix
from orchestration.store.model_files import ArtifactPaths, load_split
from orchestration.registry.promotion import BUNDLE_MODEL, current_champion
from orchestration.defs.resources import WarehouseResource
from orchestration.registry.tracking import MLflowResource

DATA_JOB = "data_job"  # ingest + transforms + item embeddings
RETRAIN_JOB = "retrain_job"  # embeddings, models, ranking, evaluation and promotion
RECOMMENDATIONS_JOB = "recommendations_job"  # the batch recommendations of the champion

# Names that are never ingested: hidden files ("." prefix) and editor / download leftovers. Excel's "~$x.xlsx"
# lock files and browsers' ".crdownload" are the common cases beside the usual partial suffixes.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download")
LANDING_SETTINGS = ("auto", "online_retail", "generic")
DEFAULT_SETTLE_SECONDS = 60.0

# The purchases the models learn from: the same filter as the user_sequences asset.
CLEAN_PURCHASES = "event_type = 'purchase' and user_id is not null"

# Every sensor and schedule starts STOPPED: a fresh `dagster dev` on a laptop must not start ingesting or
# training (minutes of CPU/GPU, and the warehouse's single write lock) until someone opts in, in the UI or
# with `dagster schedule start` / `dagster sensor start`; the instance remembers that choice across restarts.
STOPPED_SCHEDULE = dg.DefaultScheduleStatus.STOPPED
STOPPED_SENSOR = dg.DefaultSensorStatus.STOPPED


# ---- landing folder: which files are new


@dataclass(frozen=True)
class LandingFile:
    """One entry of the landing folder: a file, or a folder (size: its files' total; mtime: the newest)."""

    name: str
    size: int  # bytes
    mtime: float  # seconds since the epoch


@dataclass(frozen=True)
class LandingScan:
    new_files: tuple[LandingFile, ...]  # new or changed since the cursor, by mtime then name
    cursor: str  # JSON {name: [size, mtime]} of every settled entry seen that is still there
    waiting: tuple[str, ...]  # entries still being written (empty, or modified within the settle time)
    ignored: tuple[str, ...]  # hidden, temporary and partial names
    reason: str


def is_ignored_name(name: str) -> bool:
    """Hidden files, ``~`` lock/backup files and temporary or partial downloads."""
    return name.startswith((".", "~")) or name.lower().endswith(PARTIAL_SUFFIXES)


def _read_landing_cursor(cursor: str | None) -> dict[str, tuple[int, float]] | None:
    """The entries already seen; None when the cursor is not what this module writes."""
    if not cursor:
        return {}
    try:
        seen = json.loads(cursor)
        return {str(name): (int(state[0]), float(state[1])) for name, state in seen.items()}
    except (ValueError, TypeError, AttributeError, IndexError):
        return None


def _names(entries: Sequence[Any]) -> str:
    shown = ", ".join(str(getattr(entry, "name", entry)) for entry in entries[:5])
    return shown + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")


def new_landing_files(
    listing: Iterable[LandingFile | tuple[str, int, float]],
    cursor: str | None,
    now: float,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
) -> LandingScan:
    """The settled entries of ``listing`` that are new or changed (size or mtime) since ``cursor``.

    An entry has settled when it is not empty and its mtime is at most ``now - settle_seconds`` (the boundary
    counts as settled); others wait for a later call and stay out of the cursor so they are found then. The
    new cursor forgets entries no longer listed. An unreadable cursor counts as empty: re-requesting is
    harmless, since the sensor's run keys and ingest's content hashes both make a repeat a no-op.
    """
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite time, got {now!r}")
    if not (math.isfinite(settle_seconds) and settle_seconds >= 0):
        raise ValueError(f"settle_seconds must be a finite number >= 0, got {settle_seconds!r}")
    previous = _read_landing_cursor(cursor)
    seen = previous or {}
    entries = sorted((LandingFile(*e) if isinstance(e, tuple) else e for e in listing), key=lambda e: e.name)
    fresh, waiting, ignored, kept = [], [], [], {}
    for entry in entries:
        if is_ignored_name(entry.name):
            ignored.append(entry.name)
            continue
        state = (int(entry.size), float(entry.mtime))
        if seen.get(entry.name) == state:
            kept[entry.name] = state
            continue
        if entry.name in seen:  # changed, settled or not: remember the old state until the new one is taken
            kept[entry.name] = seen[entry.name]
        # NaN mtimes fail the comparison, so a file without a readable time never counts as settled.
        if entry.size <= 0 or not entry.mtime <= now - settle_seconds:
            waiting.append(entry.name)
            continue
        fresh.append(entry)
        kept[entry.name] = state
    fresh.sort(key=lambda e: (e.mtime, e.name))
    parts = [f"{len(fresh)} new or changed: {_names(fresh)}" if fresh else "Nothing new to ingest"]
    if waiting:
        parts.append(
            f"{len(waiting)} still being written (empty or changed in the last {settle_seconds:g} s): "
            f"{_names(waiting)}"
        )
    if ignored:
        parts.append(f"{len(ignored)} ignored (hidden or temporary): {_names(ignored)}")
    if previous is None:
        parts.append("the cursor was unreadable, so every settled entry counts as new")
    return LandingScan(
        new_files=tuple(fresh),
        cursor=json.dumps({name: list(state) for name, state in kept.items()}, sort_keys=True),
        waiting=tuple(waiting),
        ignored=tuple(ignored),
        reason="; ".join(parts) + ".",
    )


def landing_kind(name: str, members: Sequence[str] | None = None, setting: str | None = None) -> str | None:
    """The data source kind to ingest a landed entry with; None when ingest cannot read it.

    ``members`` is None for a file, else the names of the folder's files. With ``setting`` ``auto`` (or
    unset): a file with a supported suffix (.csv, .csv.gz, .parquet, .xlsx) is an Online Retail export, the
    only single-file format ingest has; a folder holding an ``interactions.*`` file is the generic format
    (interactions plus optional items); any other folder of supported files is a batch of Online Retail
    exports. ``online_retail`` or ``generic`` forces that kind, except that ``generic`` never takes a file.
    """
    setting = (setting or "auto").strip().lower()
    if setting not in LANDING_SETTINGS:
        expected = ", ".join(LANDING_SETTINGS)
        raise ValueError(f"Unknown landing source {setting!r}; expected one of {expected}.")
    if members is None:
        supported = file_suffix(Path(name)) is not None
        return "online_retail" if supported and setting != "generic" else None
    readable = [m for m in members if not is_ignored_name(m) and file_suffix(Path(m)) is not None]
    if not readable:
        return None
    if setting != "auto":
        return setting
    is_generic = any(m.lower().startswith("interactions.") for m in readable)
    return "generic" if is_generic else "online_retail"


def _list_landing(folder: Path) -> list[tuple[LandingFile, tuple[str, ...] | None]]:
    """Every file and folder directly in ``folder``, with a folder's file names (None for a file)."""
    found = []
    for path in sorted(folder.iterdir()):
        try:
            stat = path.stat()
            if path.is_file():
                found.append((LandingFile(path.name, stat.st_size, stat.st_mtime), None))
            elif path.is_dir():
                files = [(p.name, p.stat()) for p in sorted(path.iterdir()) if p.is_file()]
                size = sum(s.st_size for _, s in files)
                # A member still downloading may keep an old mtime while paused: hold the whole folder back
                # by reporting it empty, which new_landing_files treats as still being written.
                if any(n.lower().endswith(PARTIAL_SUFFIXES) for n, _ in files):
                    size = 0
                mtime = max([stat.st_mtime, *(s.st_mtime for _, s in files)])
                found.append((LandingFile(path.name, size, mtime), tuple(n for n, _ in files)))
        except FileNotFoundError:  # removed while we looked
            continue
    return found


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number (default {default:g}).") from None


def landing_run_request(entry: LandingFile, path: Path, kind: str) -> dg.RunRequest:
    """A data_job run that ingests ``path`` as ``kind``; one run key per (name, size, mtime)."""
    return dg.RunRequest(
        run_key=f"landing:{entry.name}:{entry.size}:{entry.mtime:.6f}",
        run_config={"resources": {"data_source": {"config": {"source": kind, "data": str(path)}}}},
        tags={"recsys/trigger": "landing_sensor", "recsys/source": kind},
    )


@dg.sensor(job_name=DATA_JOB, minimum_interval_seconds=30, default_status=STOPPED_SENSOR)
def landing_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
    """Ingest each file or folder dropped into RECSYS_HOME/landing once settled: one data_job run each."""
    landing = warehouse.paths.landing_dir
    if not landing.is_dir():
        reason = f"No landing folder: drop shop exports into {landing}."
        return dg.SensorResult(skip_reason=reason, cursor=context.cursor)
    setting = os.environ.get("RECSYS_LANDING_SOURCE")
    settle = _env_float("RECSYS_LANDING_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS)
    kinds, listing = {}, []
    for entry, members in _list_landing(landing):
        kind = landing_kind(entry.name, members, setting)
        if kind is None:
            if not is_ignored_name(entry.name):
                context.log.info(f"Landing: {entry.name} is not something ingest reads; left alone.")
            continue
        kinds[entry.name] = kind
        listing.append(entry)
    scan = new_landing_files(listing, context.cursor, now=time.time(), settle_seconds=settle)
    if not scan.new_files:
        return dg.SensorResult(skip_reason=scan.reason, cursor=scan.cursor)
    context.log.info(scan.reason)
    requests = [landing_run_request(e, landing / e.name, kinds[e.name]) for e in scan.new_files]
    return dg.SensorResult(run_requests=requests, cursor=scan.cursor)


# ---- retraining: enough new data, or drifted popularity


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
            min_new_share=_env_float("RECSYS_RETRAIN_MIN_NEW_SHARE", cls.min_new_share),
            max_drift=_env_float("RECSYS_RETRAIN_MAX_DRIFT", cls.max_drift),
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


@dg.sensor(job_name=RETRAIN_JOB, minimum_interval_seconds=600, default_status=STOPPED_SENSOR)
def retrain_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.RunRequest | dg.SkipReason:
    """Retrain when enough clean purchases arrived since the last training, or item popularity drifted."""
    settings = RetrainSettings.from_env()
    split_file = ArtifactPaths(warehouse.paths.artifacts_dir).split_file
    info = load_split(split_file).info if split_file.exists() else None
    last_event = None if info is None else pd.Timestamp(info["last_event"]).to_pydatetime()
    try:
        with warehouse.connect(read_only=True) as con:
            inputs = retrain_inputs(con, last_event, settings)
    except FileNotFoundError:
        return dg.SkipReason(f"No warehouse at {warehouse.path} yet: run {DATA_JOB} first.")
    except duckdb.CatalogException:
        return dg.SkipReason(f"The warehouse has no marts.fct_interactions yet: run {DATA_JOB} first.")
    except duckdb.OperationalError as error:  # a run holds DuckDB's single write lock: try again next tick
        return dg.SkipReason(f"The warehouse is busy (a run is writing to it); will look again. {error}")
    decision = retrain_decision(
        inputs.new_rows, inputs.trained_rows, settings.min_new_share, inputs.drift, settings.max_drift
    )
    if not decision.retrain:
        return dg.SkipReason(decision.reason)
    context.log.info(decision.reason)
    trained_on = "untrained" if info is None else info.get("data_version", "unknown")
    latest = "none" if inputs.latest is None else pd.Timestamp(inputs.latest).isoformat()
    # One run per (trained data, current data): a failed retrain is not relaunched each tick on the same data.
    return dg.RunRequest(
        run_key=f"retrain:{trained_on}:{inputs.trained_rows}:{inputs.new_rows}:{latest}",
        tags={"recsys/trigger": "retrain_sensor", "recsys/new_rows": str(inputs.new_rows)},
    )


# ---- champion alias: refresh recommendations when it moves


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


@dg.sensor(job_name=RECOMMENDATIONS_JOB, minimum_interval_seconds=60, default_status=STOPPED_SENSOR)
def champion_sensor(context: dg.SensorEvaluationContext, mlflow: MLflowResource) -> dg.SensorResult:
    """Refresh the batch recommendations whenever the champion alias moves (a promotion or a rollback)."""
    from mlflow.exceptions import MlflowException

    try:
        champion = current_champion(mlflow.client(), BUNDLE_MODEL)
    except MlflowException as error:
        reason = f"Could not read the model registry: {error}"
        return dg.SensorResult(skip_reason=reason, cursor=context.cursor)
    decision = champion_moved(context.cursor, None if champion is None else champion["version"])
    if not decision.moved:
        return dg.SensorResult(skip_reason=decision.reason, cursor=decision.cursor)
    context.log.info(decision.reason)
    # No run key: a rollback returns to a version seen before, so no key made of versions stays unique; the
    # cursor, committed together with the request, is what keeps a move from being acted on twice.
    tags = {"recsys/trigger": "champion_sensor", "recsys/champion_version": decision.cursor}
    request = dg.RunRequest(tags=tags)
    return dg.SensorResult(run_requests=[request], cursor=decision.cursor)


# ---- schedules

daily_data_schedule = dg.ScheduleDefinition(
    name="daily_data_schedule",
    cron_schedule="0 2 * * *",  # 02:00 UTC, after shops' nightly exports
    job_name=DATA_JOB,
    execution_timezone="UTC",
    default_status=STOPPED_SCHEDULE,
    description="Refresh the configured data source (a no-op for files already ingested) and its embeddings.",
)
weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain_schedule",
    cron_schedule="0 4 * * 1",  # Mondays 04:00 UTC, two hours after that day's data refresh starts
    job_name=RETRAIN_JOB,
    execution_timezone="UTC",
    default_status=STOPPED_SCHEDULE,
    description="Retrain, evaluate and gate the models every week, whatever the sensors decided.",
)

automation_schedules = [daily_data_schedule, weekly_retrain_schedule]
automation_sensors = [landing_sensor, retrain_sensor, champion_sensor]
