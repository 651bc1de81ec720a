"""Building a replacement champion in a child process, so that the one serving keeps its interpreter to itself.

Reading the marts into pandas, deriving the tables over every customer's events and ranking every known customer
take about a minute of CPU on Online Retail. Done on a thread of the serving process, that work holds the
interpreter lock for most of the minute, and for tens of milliseconds at a time in single pandas and Arrow calls,
however short the switch interval: every request waits its turn, and a reload under load stretched the answers'
tail from milliseconds to hundreds of them. A child process reads the same marts, builds the same service from the
same bundle folder on another core (reading the answers the pipeline ranked for this bundle over these marts, when
it did, and ranking the rest) and hands back its data, its tables and its kept answers; the serving process
loads the bundle itself (no long hold) and reads the child's objects back in pieces of a few milliseconds each.

Answers are handed back at generation 0 of their key: a customer with events recorded meanwhile (carried over from
the service being replaced) has theirs dropped and is ranked here when next asked for.

    python -m orchestration.serving.warming FOLDER HOME VERSION OUTPUT   (the child's side)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from orchestration.registry.bundle import Bundle
from orchestration.serving.batching import single_threaded
from orchestration.serving.ranked import reuse_ranked
from orchestration.serving.service import RecommendationService
from orchestration.serving.shop import ShopData
from orchestration.store.privacy import KEY_VARIABLE, pseudonymization_key

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how often the parent looks whether it was told to stop
# Below this many known customers a replacement is built in place: it takes a few seconds at most, less than a
# child takes to start and read the marts.
APART_MIN_CUSTOMERS = 500
# Added to the child's nice value: it yields the cores to the process answering requests. A nice value, not Linux's
# idle scheduling class: in the idle class the child got so little of cores that were only partly busy (a mixed load
# of 50 reads and 2.5 sessions a second) that the swap had not finished 120 s after the promotion, against 55 s with
# this (BENCHMARKS.md, serving, fourth session).
CHILD_NICENESS = 10
# Mapping entries per pickled piece: a piece of per-customer arrays loads in about a millisecond, so the serving
# process's event loop gets the interpreter between pieces.
PIECE_ENTRIES = 256
# Slept after each piece read back: the event loop, waiting on the interpreter lock, gets it and a core at once
# instead of at the next forced switch, so the answers due while a swap is adopted are not queued behind it.
PIECE_PAUSE_SECONDS = 0.001


class WarmingFailed(RuntimeError):
    """The child gave no service the serving process can adopt."""


def build_apart(bundle: Bundle, home: Path, key: str, version: int | None, stop: threading.Event,
                timeout: float = 3600.0) -> RecommendationService:
    """The service of ``bundle`` over the marts of ``home``, built and warmed in a child process from the bundle's
    folder; raises ``WarmingFailed`` when the child fails or times out, and stops it when ``stop`` is set."""
    with tempfile.TemporaryDirectory(prefix="recsys-warm-") as scratch:
        output = Path(scratch) / "service.pickles"
        command = [sys.executable, "-m", __name__, str(bundle.folder), str(home),
                   str(version if version is not None else ""), str(output)]
        errors = Path(scratch) / "stderr.txt"
        with errors.open("wb") as sink:  # a file, not a pipe: a chatty child never blocks on a full one
            # The key reaches the child in its environment, never its arguments (visible to every user).
            child = subprocess.Popen(command, env={**os.environ, KEY_VARIABLE: key},
                                     stdout=subprocess.DEVNULL, stderr=sink)
        lower_priority(child.pid)
        deadline = time.monotonic() + timeout
        while child.poll() is None:
            if stop.is_set() or time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise WarmingFailed("stopped" if stop.is_set() else f"no service within {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
        if child.returncode != 0 or not output.exists():
            problem = errors.read_text(errors="replace").strip().splitlines()
            raise WarmingFailed(f"the child exited with {child.returncode}: {problem[-1] if problem else ''}")
        with output.open("rb") as source:
            parts = read_pieces(source)  # written by this module's child from this bundle: trusted
    service = RecommendationService(bundle, ShopData(**parts["data"]), key, version, tables=parts["tables"])
    for user_key, top in parts["answers"]["kept"].items():
        service.answers.keep(user_key, top, 0)
    return service


def lower_priority(pid: int) -> None:
    """Give process ``pid`` (just started) ``CHILD_NICENESS`` more than this one. Done from here at once: the
    child's first seconds go to importing torch, pandas and the rest, and lowered by the child itself, after its
    imports, those seconds ran at the serving process's priority (the slowest answers of a swap came then). Threads
    the child starts later inherit the value."""
    with contextlib.suppress(ProcessLookupError):  # it has already exited: its return code tells why
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICENESS)


def write_pieces(sink: BinaryIO, parts: dict[str, dict[str, Any]]) -> None:
    """Pickle each part's fields one after another, a large mapping ``PIECE_ENTRIES`` entries at a time."""
    for part, fields in parts.items():
        for name, value in fields.items():
            pieces = [value]
            if isinstance(value, dict) and len(value) > PIECE_ENTRIES:
                entries = list(value.items())
                pieces = [dict(entries[i:i + PIECE_ENTRIES]) for i in range(0, len(entries), PIECE_ENTRIES)]
            for piece in pieces:
                pickle.dump((part, name, piece), sink, protocol=pickle.HIGHEST_PROTOCOL)


def read_pieces(source: BinaryIO) -> dict[str, dict[str, Any]]:
    """What ``write_pieces`` wrote, one piece per load: no single load keeps the interpreter long."""
    parts: dict[str, dict[str, Any]] = {}
    while True:
        try:
            part, name, piece = pickle.load(source)
        except EOFError:
            return parts
        time.sleep(PIECE_PAUSE_SECONDS)
        fields = parts.setdefault(part, {})
        if name in fields:  # the next piece of a mapping written in pieces
            fields[name].update(piece)
        else:
            fields[name] = piece


def _child(folder: str, home: str, version: str, output: str) -> int:
    from orchestration.store.warehouse import Warehouse

    with single_threaded():
        warehouse = Warehouse(home=home)
        service = RecommendationService.from_folder(Path(folder), warehouse, pseudonymization_key(),
                                                    int(version) if version else None)
        service.bundle.compile_ranker(warehouse.paths)  # kept for the parent, which then reads it
        reuse_ranked(service, warehouse)
        service.warm()
    data = {field.name: getattr(service.data, field.name) for field in dataclasses.fields(service.data)}
    kept = dict(service.answers.items())
    with open(output, "wb") as sink:
        write_pieces(sink, {"data": data, "tables": service.tables, "answers": {"kept": kept}})
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:5]))
