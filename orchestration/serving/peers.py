"""Events that the other server processes sharing a landing folder accepted, read from their files as they grow.

``recsys serve --workers N`` runs N processes on one port, each with its own copy of the model and its own events
file in the landing folder (``orchestration.ingest.event_log``). An event is acknowledged by the worker that took
it once it is in that worker's file; the customer's next read may reach another worker, which must reflect it too.
So before a read a worker looks for what the others have appended since it last looked (``PeerEvents.poll``): a
``stat`` of the landing folder, whose time changes whenever a file is opened or sealed (renamed) there, and one of
each open file it follows: a few microseconds. New complete lines are read back as the events they record
(``event_of_line``) and recorded as the worker's own are; an event id already recorded counts once.

Followed: every open (hidden) file of another process, from its first line, and, once sealed, to its end; a file
sealed without ever being seen open, if it appeared after this process started. Files sealed before that hold
events the warehouse has, or the landing sensor will load.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration.ingest.event_log import FILE_NAME, HEADER, OPEN_PREFIX, SEALED_PREFIX
from orchestration.ingest.event_rules import Event, event_of_line

logger = logging.getLogger(__name__)

SETTLED_NS = 2_000_000_000  # a folder time this old is past the file system's tick: a later change moves it


@dataclass
class _Followed:
    path: Path  # the file, in its open or its sealed folder
    offset: int = 0  # bytes read: whole lines, the header included
    sealed: bool = False


class PeerEvents:
    """The events other processes append to their files in ``landing``; ``owns(name)`` says which landing entries
    are this process's own. Thread-safe; ``poll`` is cheap when nothing changed."""

    def __init__(self, landing: Path, owns: Callable[[str], bool]):
        self._landing = Path(landing)
        self._owns = owns
        self._lock = threading.Lock()
        self._stamp: int | None = None  # the folder's modification time at the last scan
        self._followed: dict[str, _Followed] = {}  # folder name less its prefix -> where reading stands
        self._done: set[str] = set()  # of the same names: sealed files read to their end, or sealed before we began
        self._started = False

    def poll(self) -> list[Event]:
        """The events the other processes appended since the last call (whole lines only), in file order."""
        with self._lock:
            try:
                stamp = os.stat(self._landing).st_mtime_ns
            except FileNotFoundError:  # no event was ever taken here
                return []
            if stamp != self._stamp:
                self._scan()
                # The folder's time moves in ticks (a few ms, or a second on some file systems): a file opened in
                # the tick of this scan leaves it as it is. So a time that recent is not kept: the next poll
                # scans again, until a scan is a tick behind the last change.
                self._stamp = stamp if time.time_ns() - stamp > SETTLED_NS else None
            events: list[Event] = []
            for name, followed in sorted(self._followed.items()):  # names start with their creation time
                events += self._read(followed)
                if followed.sealed:
                    del self._followed[name]
                    self._done.add(name)
            return events

    def _scan(self) -> None:
        """Follow new open files, and sealed ones not read to their end."""
        for entry in os.scandir(self._landing):
            sealed = entry.name.startswith(SEALED_PREFIX)
            if not (sealed or entry.name.startswith(OPEN_PREFIX)) or self._owns(entry.name) or not entry.is_dir():
                continue
            name = entry.name.removeprefix(SEALED_PREFIX if sealed else OPEN_PREFIX)
            if name in self._done:
                continue
            if sealed and name not in self._followed and not self._started:
                self._done.add(name)  # sealed before this process looked: the warehouse's or the sensor's
                continue
            followed = self._followed.setdefault(name, _Followed(Path(entry.path) / FILE_NAME))
            followed.path, followed.sealed = Path(entry.path) / FILE_NAME, sealed
        # An open file sealed since the last scan and not listed (renamed and ingested between two scans) is read
        # no further: the warehouse holds what it held.
        for name, followed in list(self._followed.items()):
            if not followed.sealed and not followed.path.exists():
                sealed_path = self._landing / f"{SEALED_PREFIX}{name}" / FILE_NAME
                followed.path, followed.sealed = sealed_path, True
        self._started = True

    def _read(self, followed: _Followed) -> list[Event]:
        try:
            with open(followed.path, "rb") as file:
                file.seek(followed.offset)
                data = file.read()
        except FileNotFoundError:  # sealed and moved away meanwhile: the warehouse has it, or will
            followed.sealed = True
            return []
        except OSError as error:  # unreadable: said once, then left to the landing sensor
            logger.warning("Could not read the events in %s (%s); not following it", followed.path, error)
            followed.sealed = True
            return []
        whole = data[:data.rfind(b"\n") + 1]  # a line still being written waits for the next look
        if not whole:
            return []
        start = followed.offset
        followed.offset += len(whole)
        if start == 0:
            if not whole.startswith(HEADER):
                logger.warning("%s does not start with the events log's header; not read", followed.path)
                followed.sealed = True
                return []
            whole = whole[len(HEADER):]
        events = []
        for fields in csv.reader(io.StringIO(whole.decode())):
            try:
                events.append(event_of_line(tuple(value or None for value in fields)))
            except (TypeError, ValueError) as error:  # not a line the log wrote; the sensor will say more
                logger.warning("Skipped a line of %s that is no logged event (%s)", followed.path, error)
        return events
