"""Warming a replacement champion in a child process, so that the one serving keeps its interpreter to itself.

Ranking every known customer takes about a minute of CPU on Online Retail. Run on a thread of the serving process,
it holds the interpreter lock for most of that minute, and every request waits its turn at each switch: a reload
under load stretched the answers' tail from milliseconds to hundreds of them. A child process ranks the same
customers from the same bundle folder and the same marts on another core and hands back their kept answers; the
serving process only adopts them.

The child reads the warehouse itself, so its answers are taken only when it read the same marts (the same
fingerprint) as the service adopting them; otherwise, or when the child fails, the service warms itself as before.
An answer is adopted only at generation 0 of its key: a customer with events recorded meanwhile (carried over from
the service being replaced) is ranked again here.

    python -m orchestration.serving.warming FOLDER HOME VERSION DATA_VERSION OUTPUT   (the child's side)
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from orchestration.store.privacy import KEY_VARIABLE, pseudonymization_key

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how often the parent looks whether it was told to stop
# Below this many known customers a replacement warms in place: ranking them takes a few seconds at most, less than
# a child takes to start and read the marts.
APART_MIN_CUSTOMERS = 500
CHILD_NICENESS = 10  # added to the child's nice value: it yields the cores to the process answering requests


class WarmingFailed(RuntimeError):
    """The child gave no answers the service can adopt."""


def warm_apart(service, home: Path, stop: threading.Event, timeout: float = 3600.0) -> int:
    """Rank every known customer of ``service`` in a child process and keep the answers in ``service``; returns
    how many it adopted. Raises ``WarmingFailed`` when the child fails, times out or read other marts; stops the
    child when ``stop`` is set."""
    with tempfile.TemporaryDirectory(prefix="recsys-warm-") as scratch:
        output = Path(scratch) / "answers.pickle"
        command = [sys.executable, "-m", __name__, str(service.bundle.folder), str(home),
                   str(service.version if service.version is not None else ""), str(service.data.version),
                   str(output)]
        errors = Path(scratch) / "stderr.txt"
        with errors.open("wb") as sink:  # a file, not a pipe: a chatty child never blocks on a full one
            # The key reaches the child in its environment, never its arguments (visible to every user).
            child = subprocess.Popen(command, env={**os.environ, KEY_VARIABLE: service.key},
                                     stdout=subprocess.DEVNULL, stderr=sink)
        deadline = time.monotonic() + timeout
        while child.poll() is None:
            if stop.is_set() or time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise WarmingFailed("stopped" if stop.is_set() else f"no answers within {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
        if child.returncode != 0 or not output.exists():
            problem = errors.read_text(errors="replace").strip().splitlines()
            raise WarmingFailed(f"the child exited with {child.returncode}: {problem[-1] if problem else ''}")
        with output.open("rb") as answers:
            kept = pickle.load(answers)  # written by this module's child from this bundle: trusted
    for key, top in kept.items():
        service.answers.keep(key, top, 0)
    return len(kept)


def _child(folder: str, home: str, version: str, data_version: str, output: str) -> int:
    import torch
    from threadpoolctl import threadpool_limits

    from orchestration.serving.service import RecommendationService
    from orchestration.store.warehouse import Warehouse

    torch.set_num_threads(1)  # one core, as the serving process ranks: the same arithmetic, the same answers
    os.nice(CHILD_NICENESS)  # background work: the cores go to answering requests first
    with threadpool_limits(1):
        service = RecommendationService.from_folder(Path(folder), Warehouse(home=home), pseudonymization_key(),
                                                    int(version) if version else None)
        if str(service.data.version) != data_version:
            print(f"the marts changed (read {service.data.version}, expected {data_version})", file=sys.stderr)
            return 3
        service.warm()
    with open(output, "wb") as sink:
        pickle.dump(dict(service.answers.items()), sink, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:6]))
