"""The warehouse, for any caller: Dagster's resource, the serving app, the CLI.

By default the DuckDB file under RECSYS_HOME. DuckDB allows one writer per file, so every connection is opened
for one block and closed after it, and a run holds the whole warehouse (``Warehouse.hold``) so that a second run
waits for the first instead of failing in the middle, when one of its steps (or dbt) finds the file locked.

With ``RECSYS_WAREHOUSE=ducklake+postgresql://...`` (``store.lake``) it is a DuckLake that many processes write at
once: connections attach it under the same catalog name, and a run holds nothing.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from orchestration.store.lake import CATALOG_NAME, Lake, connection_config, extension_folder, shared_warehouse
from orchestration.store.paths import ArtifactPaths, RecsysPaths, recsys_paths
from orchestration.store.reports import write_table


WAIT_VARIABLE = "RECSYS_WAREHOUSE_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 600.0  # how long a run or a connection waits for another process's hold on the warehouse
POLL_SECONDS = 0.5
_DUCKDB_LOCK = re.compile(r"Could not set lock on file .*Conflicting lock is held in (?P<holder>.*?)\. See also", re.S)
_held: dict[Path, tuple[int, int]] = {}  # lock file -> (descriptor, depth): a process's holds nest
ATTACH_TRIES = 5  # two processes creating a new lake's catalog at once race; the loser finds it made and retries


class WarehouseBusyError(RuntimeError):
    """Another process held the warehouse for longer than the wait allows."""


class WarehouseFormatError(RuntimeError):
    """The warehouse file was written by a DuckDB newer than the one installed."""


def wait_seconds() -> float:
    """``$RECSYS_WAREHOUSE_WAIT_SECONDS`` (default 600): 0 refuses at once instead of waiting."""
    return float(os.environ.get(WAIT_VARIABLE) or DEFAULT_WAIT_SECONDS)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Warehouse:
    """The warehouse of the state folder ``home`` (None: ``$RECSYS_HOME`` or ./.recsys, read when used); ``url``
    a shared DuckLake instead (None: ``$RECSYS_WAREHOUSE`` when it names one, read when used)."""

    home: str | None = None
    url: str | None = None

    @property
    def lake(self) -> Lake | None:
        """The shared warehouse, or None for the embedded DuckDB file."""
        return shared_warehouse(self.url)

    @property
    def location(self) -> str:
        """Where the warehouse is, for people: the file's path or the lake (without its password)."""
        lake = self.lake
        return lake.describe() if lake else str(self.path)

    @property
    def dataset_uri(self) -> str:
        """The warehouse as a URI MLflow can show as a run's input: the file, or the lake's data folder."""
        lake = self.lake
        if lake is None:
            return self.path.resolve().as_uri()
        folder = lake.data_folder
        return folder if "://" in folder else Path(folder).as_uri()

    def exists(self) -> bool:
        """Whether anything was written yet (a lake's catalog is created when first attached, so: yes)."""
        # recsys_paths, not self.path: asking must not create the home's folders.
        return self.lake is not None or recsys_paths(self.home).warehouse.exists()

    def change_token(self) -> tuple | None:
        """Something that changes whenever the embedded file is written (its and its write-ahead log's size and
        modification time), so a poller can skip reading what cannot have changed; None for a shared lake, whose
        writers leave no such trace here."""
        if self.lake is not None:
            return None
        path = recsys_paths(self.home).warehouse
        stats = []
        for file in (path, path.with_name(path.name + ".wal")):
            try:
                stat = file.stat()
            except FileNotFoundError:
                stats.append(None)
            else:
                stats.append((stat.st_size, stat.st_mtime_ns, stat.st_ino))
        return tuple(stats)

    def dbt_environment(self) -> dict[str, str]:
        """The variables transforms/profiles.yml reads to reach this warehouse from a dbt subprocess."""
        lake = self.lake
        if lake is None:
            return {"RECSYS_DBT_TARGET": "dev", "RECSYS_WAREHOUSE": str(self.path)}
        return {"RECSYS_DBT_TARGET": "lake", "RECSYS_LAKE_CATALOG": f"postgres:{lake.catalog}",
                "RECSYS_LAKE_DATA_PATH": lake.data_folder, "RECSYS_DUCKDB_EXTENSIONS": str(self._extensions())}

    def _extensions(self) -> Path:
        return extension_folder(self.paths.cache_dir / "duckdb-extensions")

    @property
    def paths(self) -> RecsysPaths:
        return recsys_paths(self.home).ensure()

    @property
    def path(self) -> Path:
        return self.paths.warehouse

    @property
    def artifacts(self) -> ArtifactPaths:
        """Where the model assets write their files."""
        return self.paths.artifacts

    @contextmanager
    def connect(self, read_only: bool = False, wait: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection; while another process has the file open, wait for it up to ``wait_seconds()`` or, with
        ``wait=False`` (sensors, whose ticks must stay short), raise ``WarehouseBusyError`` at once."""
        lake = self.lake
        if lake is not None:
            con = self._attach(lake, read_only)
            try:
                yield con
            finally:
                con.close()
            return
        path = self.path
        # FileNotFoundError, which callers catch to say "run ingest first", rather than DuckDB's IOException.
        if read_only and not path.exists():
            raise FileNotFoundError(f"The warehouse {path} does not exist yet: materialize the ingest assets first.")
        con = self._open(path, read_only, wait_seconds() if wait else 0.0)
        try:
            yield con
        finally:
            con.close()

    def _attach(self, lake: Lake, read_only: bool) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with the lake attached and in use, so ``schema.table`` means the lake's table."""
        con = duckdb.connect(config=connection_config(self._extensions()))
        try:
            for attempt in range(ATTACH_TRIES):
                try:
                    con.execute(lake.attach_sql(read_only))
                    break
                except duckdb.Error as error:
                    if attempt + 1 == ATTACH_TRIES or not _creation_race(error):
                        raise
                    time.sleep(POLL_SECONDS * (attempt + 1))
            con.execute(f"use {CATALOG_NAME}")
        except BaseException:
            con.close()
            raise
        return con

    def _open(self, path: Path, read_only: bool, patience: float,
              notify: Callable[[str], None] = _stderr) -> duckdb.DuckDBPyConnection:
        """A connection, after waiting (up to ``patience`` seconds) while another process has the file open."""
        deadline = time.monotonic() + patience
        said = False
        while True:
            try:
                return duckdb.connect(str(path), read_only=read_only)
            except duckdb.IOException as error:
                if "created with an newer version" in str(error) or "created with a newer version" in str(error):
                    raise WarehouseFormatError(
                        f"The warehouse {path} was written by a newer DuckDB than this project's {duckdb.__version__} "
                        "(README, 'Why DuckDB 1.5.5'): rebuild it (delete it and materialize again; the landing "
                        "folder and sources stay) or EXPORT DATABASE it with that DuckDB and IMPORT DATABASE here."
                    ) from None
                locked = _DUCKDB_LOCK.search(str(error))
                if locked is None:
                    raise
                holder = locked["holder"]
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(f"The warehouse {path} is in use by {holder}; gave up after "
                                         f"{patience:.0f} s (set {WAIT_VARIABLE} to wait longer).")
            if not said:
                notify(f"Waiting for the warehouse {path}: in use by {holder} ...")
                said = True
            time.sleep(POLL_SECONDS)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".run-lock")

    @contextmanager
    def hold(self, purpose: str, notify: Callable[[str], None] = _stderr) -> Iterator[None]:
        """Hold the warehouse for a whole run (an advisory lock beside the file, released when the process
        ends however it ends). Another process's hold is waited for, up to ``wait_seconds()``, saying who
        holds it; then ``WarehouseBusyError``. Holds in one process nest. A shared lake is not held: it takes
        many writers."""
        if self.lake is not None:
            yield
            return
        path = self.lock_path
        if path in _held:
            descriptor, depth = _held[path]
            _held[path] = (descriptor, depth + 1)
        else:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._acquire(descriptor, path, notify)
            except BaseException:
                os.close(descriptor)
                raise
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"PID {os.getpid()} ({purpose}, since {datetime.now():%Y-%m-%d %H:%M:%S})"
                      .encode(), 0)
            _held[path] = (descriptor, 1)
        try:
            yield
        finally:
            descriptor, depth = _held.pop(path)
            if depth > 1:
                _held[path] = (descriptor, depth - 1)
            else:
                os.close(descriptor)  # closing releases the lock

    def _acquire(self, descriptor: int, path: Path, notify: Callable[[str], None]) -> None:
        deadline = time.monotonic() + wait_seconds()
        said = False
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                holder = os.pread(descriptor, 4096, 0).decode(errors="replace").strip() or "another process"
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(f"The warehouse {self.path} is held by {holder}; gave up after "
                                         f"{wait_seconds():.0f} s (set {WAIT_VARIABLE} to wait longer).")
            if not said:
                notify(f"Waiting for the warehouse {self.path}: held by {holder} ...")
                said = True
            time.sleep(POLL_SECONDS)

    def write_table(self, relation: str, frame: pd.DataFrame) -> int:
        """Replace ``relation`` (``schema.name``) with ``frame`` in one write; returns its row count."""
        with self.connect() as con:
            return write_table(con, relation, frame)

    def read_table(self, relation: str) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.sql(f"select * from {relation}").df()


def _creation_race(error: duckdb.Error) -> bool:
    """Whether attaching failed because another process was creating the same new catalog at that moment."""
    text = str(error).lower()
    return "duplicate key" in text or "already exists" in text
