"""What a known customer's read costs in-process right after an event, when their answer must be ranked again.

    python -m benchmarks.live_cost --home PATH [--customers 600] [--threads 16]

Loads the champion of ``--home`` as ``recsys serve`` does (one thread for torch, BLAS and OpenMP), records one
event for each of ``--customers`` known customers (a view, one in ten a purchase, a minute after the data's newest
event) and reads each customer's answer as ``GET /recommendations/{customer}`` does, less HTTP:

- ``first read``: the read right after the event: the customer rebuilt with it, ranked, explained and kept;
- ``ranked again, arrays`` and ``ranked again, frames``: the kept answers dropped and every customer ranked again,
  by the array path serving uses (``TwoStageRecommender.rank_known``) and by the frame path it replaced (``rank``
  over pandas frames), alternately, twice each; the answers of both must be equal to the bit;
- ``concurrent``: a second event for each customer, then the reads from ``--threads`` threads at once, which the
  service ranks together.

Reported per read: wall time and the process's CPU time (every thread's), in ms, and the frame path's CPU over the
array path's. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.serving_server import champion_in_process
from benchmarks.session_cost import measured


def events_for(customers: list[str], items: list[str], at: pd.Timestamp, tag: str, seed: int) -> pd.DataFrame:
    """One event per customer, as ``RecommendationService.record_events`` takes them."""
    rng = np.random.default_rng(seed)
    kinds = np.where(rng.random(len(customers)) < 0.1, "purchase", "view")
    return pd.DataFrame({"event_id": [f"{tag}-{i}" for i in range(len(customers))], "user_id": customers,
                         "session_id": None, "item_id": rng.choice(items, size=len(customers)),
                         "event_type": kinds, "occurred_at": at, "quantity": 1.0, "price": np.nan})


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="a RECSYS_HOME with a champion")
    parser.add_argument("--customers", type=int, default=600, help="customers read, each after one event")
    parser.add_argument("--threads", type=int, default=16, help="concurrent callers in the last measurement")
    args = parser.parse_args(argv)
    with champion_in_process(Path(args.home)) as champion:
        service = champion.service
        rng = np.random.default_rng(0)
        chosen = [champion.customers[i] for i in rng.permutation(len(champion.customers))[:args.customers]]
        newest = service.as_of
        service.record_events(events_for(chosen, champion.items, newest + pd.Timedelta(minutes=1), "first", 1))

        def read_all() -> dict[str, np.ndarray]:
            return {customer: service.user_top(customer)[0] for customer in chosen}

        def drop_all() -> None:
            for customer in chosen:
                service.answers.drop(service.user_key(customer))

        figures = {"first read": measured(read_all, len(chosen))}
        arrays = service.recommender.rank_known
        answers: dict[str, list[dict[str, np.ndarray]]] = {"arrays": [], "frames": []}
        timings: dict[str, list[dict[str, float]]] = {"arrays": [], "frames": []}
        for path in ("frames", "arrays", "frames", "arrays"):
            drop_all()
            # Without the array path, rank_requests takes rank over frames, as where the arrays do not reproduce it.
            service.recommender.rank_known = arrays if path == "arrays" else (lambda *_, **__: None)
            answers[path].append({})
            timings[path].append(measured(lambda into=answers[path][-1]: into.update(read_all()), len(chosen)))
        service.recommender.rank_known = arrays
        for path, runs in timings.items():
            figures[f"ranked again, {path}"] = {name: round(float(np.mean([run[name] for run in runs])), 2)
                                                for name in runs[0]}
        equal = all(np.array_equal(left[customer], right[customer])
                    for left, right in zip(answers["arrays"], answers["frames"]) for customer in chosen)
        service.record_events(events_for(chosen, champion.items, newest + pd.Timedelta(minutes=2), "second", 2))

        def together() -> None:
            threads = [threading.Thread(target=lambda part=chosen[i::args.threads]: [service.user_top(c) for c in part])
                       for i in range(args.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        figures["concurrent"] = measured(together, len(chosen))
    ratio = round(figures["ranked again, frames"]["cpu_ms"] / figures["ranked again, arrays"]["cpu_ms"], 2)
    print(f"{len(chosen)} known customers of {args.home}, each read after one event:")
    for name, row in figures.items():
        print(f"{name:>22}: {row['wall_ms']:6.2f} ms wall, {row['cpu_ms']:6.2f} ms CPU per read")
    print(f"frames / arrays, CPU: {ratio}; answers equal to the bit: {equal}")
    result = {"benchmark": "live_cost", "customers": len(chosen), "figures": figures,
              "frames_over_arrays_cpu": ratio, "equal": equal}
    print(json.dumps(result))
    if not equal:
        raise SystemExit("the array path's answers differ from the frame path's")
    return figures


if __name__ == "__main__":
    main()
