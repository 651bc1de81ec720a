"""The landing folder: which dropped files and folders are new, settled and readable, and as which source.

Pure decisions over a listing (name, size, mtime) and the sensor's cursor, so they are tested without Dagster;
``orchestration.defs.automation.landing_sensor`` turns them into runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.ingest.readers import file_suffix

# Names that are never ingested: hidden files ("." prefix) and editor / download leftovers. Excel's "~$x.xlsx"
# lock files and browsers' ".crdownload" are the common cases beside the usual partial suffixes.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download")
LANDING_SETTINGS = ("auto", "online_retail", "generic")
DEFAULT_SETTLE_SECONDS = 60.0


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


def list_landing(folder: Path) -> list[tuple[LandingFile, tuple[str, ...] | None]]:
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
