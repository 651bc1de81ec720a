"""What one ``POST /recommendations/session`` costs in-process, without HTTP: alone, and concurrent (micro-batched).

    python -m benchmarks.session_cost --home PATH [--sessions 300] [--threads 16]

Loads the champion of ``--home`` as ``recsys serve`` does (one thread for torch, BLAS and OpenMP), then answers
sessions shaped as the serving benchmark's (3 to 5 catalogue items, each a view or, one in five, a cart), first one
at a time, then from ``--threads`` threads at once, which the service ranks together; each answer is written out as
the route writes its body. Reported per session: wall
time and the process's CPU time (every thread's), in ms. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.serving_server import champion_in_process
from orchestration.serving.responses import session_json

SessionEvents = list[tuple[str, str, None]]


def sessions(items: list[str], n: int, seed: int = 0) -> list[SessionEvents]:
    """``n`` sessions as the serving benchmark sends them."""
    rng = np.random.default_rng(seed)
    return [[(str(item), "cart" if rng.random() < 0.2 else "view", None)
             for item in rng.choice(items, size=int(rng.integers(3, 6)), replace=False)] for _ in range(n)]


def measured(run, n: int) -> dict[str, float]:
    """Wall and CPU ms per session of ``run()``, which answers ``n`` sessions."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return {"wall_ms": round((time.perf_counter() - wall) / n * 1000, 2),
            "cpu_ms": round((time.process_time() - cpu) / n * 1000, 2)}


def in_threads(work: Callable[[Any], Any], inputs: list, threads: int) -> None:
    """``work`` of every input, from ``threads`` threads at once, each taking every ``threads``-th input."""
    started = [threading.Thread(target=lambda part=inputs[i::threads]: [work(one) for one in part])
               for i in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="a RECSYS_HOME with a champion")
    parser.add_argument("--sessions", type=int, default=300, help="sessions per measurement")
    parser.add_argument("--threads", type=int, default=16, help="concurrent callers in the second measurement")
    args = parser.parse_args(argv)
    with champion_in_process(Path(args.home)) as champion:
        service = champion.service
        planned = sessions(champion.items, args.sessions)

        def answer(events: SessionEvents) -> bytes:  # what the route does, less HTTP and the request's parsing
            return session_json(service, service.recommend_events(events, as_rows=True), 1)

        for events in planned[:5]:  # first calls build caches
            answer(events)

        def alone() -> None:
            for events in planned:
                answer(events)

        figures = {"alone": measured(alone, len(planned)),
                   "concurrent": measured(lambda: in_threads(answer, planned, args.threads), len(planned))}
    for name, row in figures.items():
        print(f"{name:>10}: {row['wall_ms']:6.2f} ms wall, {row['cpu_ms']:6.2f} ms CPU per session")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
