"""What a known customer's read costs in-process right after an event, when their answer must be ranked again.

    python -m benchmarks.live_cost --home PATH [--customers 600] [--threads 16]

Loads the champion of ``--home`` as ``recsys serve`` does (one thread for torch, BLAS and OpenMP), records one
event for each of ``--customers`` known customers (a view, one in ten a purchase, a minute after the data's newest
event) and reads each customer's answer as ``GET /recommendations/{customer}`` does, less HTTP:

- ``first read``: the read right after the event: the customer rebuilt with it, ranked, explained and kept;
- ``ranked again``: the kept answers dropped and every customer ranked again, alternately, twice each, by the
  array path serving uses (``TwoStageRecommender.rank_known``) with each history's candidates kept from the first
  read (``kept candidates``, as after an event that leaves the history as it is) and scored again (``candidates
  scored``), and by the frame path it replaced (``rank`` over pandas frames, candidates scored); the answers of all
  three must be equal to the bit;
- ``concurrent``: a second event for each customer (the candidates of the first read kept), then the reads from
  ``--threads`` threads at once, which the service ranks together.

Reported per read: wall time and the process's CPU time (every thread's), in ms, and the frame path's CPU over the
array path's. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.serving_server import champion_in_process
from benchmarks.session_cost import in_threads, measured
from recmodels.ranking.candidate_cache import CandidateCache


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
        recommender = service.recommender
        arrays, kept = recommender.rank_known, recommender.candidate_cache  # it holds the first reads' candidates
        paths = ("arrays, kept candidates", "arrays, candidates scored", "frames")
        answers: dict[str, list[dict[str, np.ndarray]]] = {path: [] for path in paths}
        timings: dict[str, list[dict[str, float]]] = {path: [] for path in paths}
        for path in paths * 2:
            drop_all()
            recommender.candidate_cache = kept if path == paths[0] else CandidateCache()
            # Without the array path, rank_requests takes rank over frames, as where the arrays do not reproduce it.
            recommender.rank_known = arrays if path != "frames" else (lambda *_, **__: None)
            answers[path].append({})
            timings[path].append(measured(lambda into=answers[path][-1]: into.update(read_all()), len(chosen)))
        recommender.rank_known, recommender.candidate_cache = arrays, kept
        for path, runs in timings.items():
            figures[f"ranked again, {path}"] = {name: round(float(np.mean([run[name] for run in runs])), 2)
                                                for name in runs[0]}
        equal = all(np.array_equal(first[customer], other[customer]) for path in paths[1:]
                    for first, other in zip(answers[paths[0]], answers[path]) for customer in chosen)
        service.record_events(events_for(chosen, champion.items, newest + pd.Timedelta(minutes=2), "second", 2))
        figures["concurrent"] = measured(lambda: in_threads(service.user_top, chosen, args.threads), len(chosen))
    frames = figures["ranked again, frames"]["cpu_ms"]
    ratios = {path: round(frames / figures[f"ranked again, {path}"]["cpu_ms"], 2) for path in paths[:2]}
    print(f"{len(chosen)} known customers of {args.home}, each read after one event:")
    for name, row in figures.items():
        print(f"{name:>40}: {row['wall_ms']:6.2f} ms wall, {row['cpu_ms']:6.2f} ms CPU per read")
    print("frames / arrays, CPU: " + ", ".join(f"{ratio} ({path})" for path, ratio in ratios.items())
          + f"; answers equal to the bit: {equal}")
    result = {"benchmark": "live_cost", "customers": len(chosen), "figures": figures,
              "frames_over_arrays_cpu": ratios, "equal": equal}
    print(json.dumps(result))
    if not equal:
        raise SystemExit("the paths' answers differ")
    return figures


if __name__ == "__main__":
    main()
