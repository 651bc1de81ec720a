"""The events log: accepted events appended durably to generic-format files in the landing folder.

Files. Events go to ``<landing>/.api-events-<UTC creation time>-<pid>-<seq>/interactions.csv`` (header
``EVENT_COLUMNS``), a hidden folder the landing sensor leaves alone. Once the file holds ``max_bytes`` or
more, once its first event is ``max_age_seconds`` old, and when the log closes, the folder is sealed: renamed,
in one atomic step, to ``api-events-...`` (visible), which the landing sensor ingests as a generic folder.

Durability. ``append`` returns only after its lines are written and fsynced, and after the fsync of the
folders whose entries changed (the new folder and its parent when a file is created, the parent when one is
renamed); callers acknowledge events only then. One writer at a time (a lock around write and fsync), so lines
never interleave; requests that arrive while a write is under way queue, and the next writer takes the whole
queue in one write and one fsync (group commit): a burst of requests costs about one fsync, not one each.

Recovery. A process killed mid-append leaves its folder hidden, perhaps ending in a torn line from a request
that was never acknowledged. ``recover`` (run by ``open``) truncates such a tail and seals the folder, or
removes it when it holds no complete event. Each open file is locked with ``flock`` by the process writing it,
and only folders whose file can be locked are recovered: the kernel drops the lock when its process dies,
however it dies, while a pid written in a name can be reused (a restarted container's server is often pid
1 again) and means nothing across hosts or PID namespaces sharing a volume. So several server processes may
share one landing folder and recover each other's leftovers, never a live file. (flock needs a local file
system; on NFS give each host its own landing folder.)
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import itertools
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from orchestration.ingest.event_rules import FIELDS

log = logging.getLogger(__name__)

EVENT_COLUMNS = FIELDS  # the generic format's columns, in file order
FILE_NAME = "interactions.csv"  # what makes a landed folder the generic format (landing_kind)
OPEN_PREFIX = ".api-events-"
SEALED_PREFIX = "api-events-"
_TAIL_CHUNK = 1 << 16
SETTINGS_PREFIX = "RECSYS_EVENTS_"
MAX_BYTES_VARIABLE, MAX_AGE_VARIABLE = f"{SETTINGS_PREFIX}MAX_BYTES", f"{SETTINGS_PREFIX}MAX_AGE_SECONDS"


def encode_lines(rows: Iterable[Sequence[str | None]]) -> bytes:
    """CSV lines (UTF-8, ``\\n``-terminated, quoted where needed); None is an empty field."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


HEADER = encode_lines([EVENT_COLUMNS])


@dataclass(frozen=True)
class EventLogSettings:
    """When an open file is sealed (handed to the landing sensor)."""

    max_bytes: int = 16 << 20  # bytes: sealed once it holds this much (one append may pass it)
    max_age_seconds: float = 60.0  # seconds after its first event

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {self.max_bytes}")
        if not (math.isfinite(self.max_age_seconds) and self.max_age_seconds > 0):
            raise ValueError(f"max_age_seconds must be a finite number above 0, got {self.max_age_seconds}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> EventLogSettings:
        """``RECSYS_EVENTS_MAX_BYTES`` and ``RECSYS_EVENTS_MAX_AGE_SECONDS`` (of ``environ``, default the
        process's); the defaults where unset or blank. ``EventSettingError`` for a malformed value, or for a
        ``RECSYS_EVENTS_*`` name that is none of them (a misspelt setting would otherwise be ignored)."""
        environ = os.environ if environ is None else environ
        known = (MAX_BYTES_VARIABLE, MAX_AGE_VARIABLE)
        for name in sorted(environ):
            if name.startswith(SETTINGS_PREFIX) and name not in known:
                raise EventSettingError(f"{name} is not a setting of the events log; expected one of "
                                        f"{', '.join(known)}")
        max_bytes = _setting(environ, MAX_BYTES_VARIABLE, lambda n: n >= 1 and float(n).is_integer(),
                             f"a whole number of bytes, at least 1 (max_bytes; default {cls.max_bytes}, 16 MiB)")
        max_age = _setting(environ, MAX_AGE_VARIABLE, lambda n: math.isfinite(n) and n > 0,
                           f"a number of seconds above 0 (max_age_seconds; default {cls.max_age_seconds:g})")
        return cls(cls.max_bytes if max_bytes is None else int(max_bytes),
                   cls.max_age_seconds if max_age is None else max_age)


class EventSettingError(ValueError):
    """A malformed events setting; the message names the variable, its value and what is expected."""


def _setting(environ: Mapping[str, str], name: str, valid, expected: str) -> float | None:
    """``environ[name]`` as a number that is ``valid``; None when unset or blank."""
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not valid(number):
        raise EventSettingError(f"{name}={value!r} is not valid; expected {expected}")
    return number


class EventLogError(RuntimeError):
    """The events could not be made durable (or the log is closed): none of them may be acknowledged."""


@dataclass
class _OpenFile:
    folder: Path  # the hidden folder
    fd: int  # open for reading and appending (sealing reads the tail), flock-ed
    size: int  # bytes durable in the file, header included
    opened_at: float  # time.monotonic() of its creation


@dataclass
class _Append:
    data: bytes
    done: bool = False
    error: BaseException | None = None


class EventLog:
    """Appends events durably to rotating files in ``folder`` (the landing folder). Use as a context manager,
    or ``open`` (recovers leftovers, starts the age check) and ``close`` (seals the open file)."""

    def __init__(self, folder: Path, settings: EventLogSettings | None = None) -> None:
        self.folder = Path(folder)
        self.settings = settings or EventLogSettings()
        self._cond = threading.Condition()
        self._pending: list[_Append] = []
        self._busy = False  # a thread holds the writer's turn (writing, sealing)
        self._closed = True
        self._file: _OpenFile | None = None
        self._sequence = itertools.count(1)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._created: set[str] = set()  # the names of the folders this log created, less their prefix

    def __enter__(self) -> EventLog:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> list[Path]:
        """Recover what dead writers left (the folders sealed), then accept appends."""
        self.folder.mkdir(parents=True, exist_ok=True)
        sealed = recover(self.folder)
        with self._cond:
            self._closed = False
        self._stop.clear()
        interval = min(1.0, self.settings.max_age_seconds / 4)
        self._ticker = threading.Thread(target=self._tick, args=(interval,), name="event-log-rotation",
                                        daemon=True)
        self._ticker.start()
        return sealed

    def close(self) -> None:
        """Seal the open file and refuse further appends."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._turn():
            self._closed = True
            if self._file is not None:
                self._seal(self._file)

    def append(self, rows: Sequence[Sequence[str | None]]) -> None:
        """Write ``rows`` (fields in ``EVENT_COLUMNS`` order) and make them durable; raises ``EventLogError``
        when they are not, and then none of them is in the log."""
        entry = _Append(encode_lines(rows))
        if not entry.data:
            return
        with self._cond:
            if self._closed:
                raise EventLogError("the events log is closed (the server is stopping)")
            self._pending.append(entry)
            while not entry.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy, batch, self._pending = True, self._pending, []
                self._cond.release()
                error = None
                try:
                    self._write(b"".join(queued.data for queued in batch))
                except BaseException as exc:  # every request of the batch hears it; none is acknowledged
                    error = exc
                finally:
                    self._cond.acquire()
                    self._busy = False
                    for queued in batch:
                        queued.done, queued.error = True, error
                    self._cond.notify_all()
        if entry.error is not None:
            raise EventLogError(f"the events could not be written durably: {entry.error}") from entry.error

    def seal_if_due(self) -> bool:
        """Seal the open file when its first event is ``max_age_seconds`` old; True when it did."""
        with self._turn():
            current = self._file
            if current is None or time.monotonic() - current.opened_at < self.settings.max_age_seconds:
                return False
            self._seal(current)
            return True

    def owns(self, name: str) -> bool:
        """Whether a landing entry's name (open or sealed) is of a folder this log created."""
        return name.removeprefix(OPEN_PREFIX).removeprefix(SEALED_PREFIX) in self._created

    @property
    def open_folder(self) -> Path | None:
        """The hidden folder being written, if any."""
        current = self._file
        return None if current is None else current.folder

    # ---- the writer's turn: one thread at a time touches the open file

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.seal_if_due()
            except Exception:  # a failed seal is logged in _seal; keep checking
                log.exception("Checking the events file's age failed")

    def _write(self, data: bytes) -> None:
        if self._closed:
            raise EventLogError("the events log is closed (the server is stopping)")
        current = self._file or self._create()
        try:
            _write_all(current.fd, data)
            os.fsync(current.fd)
        except BaseException:
            self._undo(current)
            raise
        current.size += len(data)
        if current.size >= self.settings.max_bytes:
            self._seal(current)

    def _create(self) -> _OpenFile:
        """A new hidden folder holding a header-only file, locked and durable."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            folder = self.folder / f"{OPEN_PREFIX}{stamp}-{os.getpid()}-{next(self._sequence):06d}"
            path = folder / FILE_NAME
            try:
                folder.mkdir()
                self._created.add(folder.name.removeprefix(OPEN_PREFIX))
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            except (FileExistsError, FileNotFoundError):  # taken, or removed by a recovery: another name
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Between creating the file and locking it, another process's recovery may have locked it, found
            # it empty and removed it; then this descriptor points at nothing anyone will read.
            if not _is_at(path, fd):
                os.close(fd)
                continue
            try:
                _write_all(fd, HEADER)
                os.fsync(fd)
                _fsync_dir(folder)
                _fsync_dir(self.folder)
            except BaseException:
                os.close(fd)
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._file = _OpenFile(folder, fd, len(HEADER), time.monotonic())
            return self._file

    def _undo(self, current: _OpenFile) -> None:
        """After a failed write: cut the file back to its durable lines, so the next append does not continue
        a torn line; if even that fails, leave the file (its lock goes with the descriptor) to a recovery."""
        try:
            os.ftruncate(current.fd, current.size)
            os.fsync(current.fd)
        except OSError:
            log.exception("Could not cut %s back after a failed write; leaving it to recovery",
                          current.folder)
            self._file = None
            os.close(current.fd)

    def _seal(self, current: _OpenFile) -> None:
        self._file = None
        try:
            seal_folder(self.folder, current.folder, current.fd)
        except OSError:
            log.exception("Could not seal %s; a later start of the server will", current.folder)
        finally:
            os.close(current.fd)


def seal_folder(landing: Path, folder: Path, fd: int) -> Path | None:
    """Seal a hidden events folder whose file ``fd`` (open for reading and writing) this process has locked:
    cut a torn last line, then rename the folder visible (the new path), or remove it when no complete event
    is left (None)."""
    size = os.fstat(fd).st_size
    complete = _complete_length(fd, size)
    if complete < size:
        os.ftruncate(fd, complete)
        os.fsync(fd)
    if complete <= len(HEADER):
        shutil.rmtree(folder)
        _fsync_dir(landing)
        return None
    target = landing / (SEALED_PREFIX + folder.name[len(OPEN_PREFIX):])
    for number in itertools.count(2):
        if not target.exists():
            break
        target = landing / f"{SEALED_PREFIX}{folder.name[len(OPEN_PREFIX):]}-{number}"
    os.rename(folder, target)
    _fsync_dir(landing)
    return target


def recover(landing: Path) -> list[Path]:
    """Seal every hidden events folder in ``landing`` whose writer is gone (its file is not locked); the
    folders sealed. A torn last line is cut; a folder without a complete event is removed."""
    sealed = []
    for folder in sorted(landing.glob(OPEN_PREFIX + "*")):
        if not folder.is_dir():
            continue
        path = folder / FILE_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            # A writer died between creating the folder and its file (or is between the two now: it retries).
            with contextlib.suppress(OSError):
                folder.rmdir()
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's
            if not _is_at(path, fd):
                continue  # sealed by its writer, or by another recovery, since we listed it
            result = seal_folder(landing, folder, fd)
        finally:
            os.close(fd)
        if result is not None:
            log.info("Recovered %s, left open by a process that is gone, as %s", folder.name, result.name)
            sealed.append(result)
    return sealed


def _complete_length(fd: int, size: int) -> int:
    """Bytes up to and including the last newline of the file."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_at(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)
