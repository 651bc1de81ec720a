"""Serving at production rates: reads, sessions, events in, a promotion under load, and a crash.

    python -m benchmarks.serving --home PATH [--scenario all|user|session|events|mixed|crash] [--seconds 60]
        [--user-rate 300] [--session-rate 200] [--event-rate 1000] [--event-batch 100] [--workers 1] [--no-pinning]

Starts ``recsys serve`` over the champion of ``--home`` as a child process on loopback (its own interpreter; a copy
of the home when a scenario writes to it), then sends requests open loop (``benchmarks.load``): request i is due at
t0 + i / rate, and its latency runs from that moment, so a server that falls behind shows it in the tail.

- ``user``: ``GET /recommendations/{customer}``, customers with purchases drawn with a fixed seed.
- ``session``: ``POST /recommendations/session`` with 3 to 5 typed events (views and carts) of catalogue items.
- ``events``: ``POST /events``, batches of ``--event-batch`` events of known customers and items.
- ``mixed``: the three together at half, a quarter and a quarter of their rates; halfway through, the champion's
  bundle is registered again as a new version and promoted, so the server loads it while answering. The swap
  window runs from the promotion to the first answer from the new version.
- ``crash``: events stream in; the server is killed with SIGKILL halfway; it is started again (which seals what
  the killed one left open), then one tick of the landing sensor ingests the landing folder, and every event id the
  killed server acknowledged must be in ``marts.fct_interactions`` exactly once (``benchmarks.serving_crash``).

Also reported: seconds from start to the first answer, the server's resident memory, and its CPU per request.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit_json, machine
from benchmarks.load import Request, Result, evenly, open_loop
from benchmarks.serving_server import ServerProcess, catalogue_sample
from orchestration.store.paths import recsys_paths
from orchestration.store.privacy import pseudonymization_key

USER = "GET /recommendations/{user_id}"
SESSION = "POST /recommendations/session"
EVENTS = "POST /events"
SCENARIOS = ("user", "session", "events", "mixed", "crash")
WRITING = {"events", "mixed", "crash"}  # scenarios that change the home: they run on a copy
EVENT_MIX = {"view": 0.7, "cart": 0.2, "purchase": 0.1}  # roughly a shop's clickstream


class Planner:
    """Seeded requests of each kind over the home's customers and items."""

    def __init__(self, customers: list[str], items: list[str], token: str, seed: int):
        self.customers, self.items = customers, items
        self.rng = np.random.default_rng(seed)
        self.auth = (("Authorization", f"Bearer {token}"),)
        self.next_event = 0
        self.run_id = secrets.token_hex(4)  # event ids differ between runs over the same home

    def user(self) -> Request:
        return Request(USER, "GET", f"/recommendations/{self.customers[self.rng.integers(len(self.customers))]}")

    def session(self) -> Request:
        picked = self.rng.choice(self.items, size=int(self.rng.integers(3, 6)), replace=False)
        events = [{"item_id": str(item), "event_type": "cart" if self.rng.random() < 0.2 else "view"}
                  for item in picked]
        return Request(SESSION, "POST", "/recommendations/session", {"events": events, "k": 10})

    def event_batch(self, size: int) -> Request:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kinds = self.rng.choice(list(EVENT_MIX), size=size, p=list(EVENT_MIX.values()))
        events = []
        for kind in kinds:
            self.next_event += 1
            events.append({"event_id": f"bench-{self.run_id}-{self.next_event}",
                           "user_id": self.customers[self.rng.integers(len(self.customers))],
                           "item_id": self.items[self.rng.integers(len(self.items))],
                           "event_type": str(kind), "timestamp": now,
                           **({"quantity": 1} if kind == "purchase" else {})})
        return Request(EVENTS, "POST", "/events", {"events": events}, self.auth)


def percentiles(latencies_s: np.ndarray) -> dict[str, float | None]:
    ms = np.asarray(latencies_s) * 1000
    return {name: (round(float(np.percentile(ms, q)), 1) if len(ms) else None)
            for name, q in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("max_ms", 100))}


def summarise(results: list[Result], seconds: float) -> dict[str, dict[str, Any]]:
    figures = {}
    for label in dict.fromkeys(r.label for r in results):
        mine = [r for r in results if r.label == label]
        good = np.array([r.latency for r in mine if r.status == 200])
        row: dict[str, Any] = {"requests": len(mine), "errors": sum(r.status != 200 for r in mine),
                               "rate": round(len(mine) / seconds, 1), **percentiles(good)}
        if label == EVENTS:  # over the time to the last answer: a server that falls behind takes longer
            accepted = sum(json.loads(r.body)["accepted"] for r in mine if r.status == 200 and r.body)
            span = max(r.due + r.latency for r in mine) - min(r.due for r in mine)
            row["events_per_s"] = round(accepted / max(span, seconds), 1)
        figures[label] = row
    return figures


def first_errors(results: list[Result], n: int = 3) -> list[str]:
    return [f"{r.label}: {r.status} {r.body[:200].decode(errors='replace')}" for r in results if r.status != 200][:n]


def steady(server: ServerProcess, planner: Planner, scenario: str, rate: float, seconds: float,
           batch: int) -> dict[str, Any]:
    """One kind of request at one rate: figures, the server's CPU per request and memory."""
    n = max(1, int(rate * seconds))
    make = {"user": planner.user, "session": planner.session,
            "events": lambda: planner.event_batch(batch)}[scenario]
    requests = [make() for _ in range(n)]
    cpu = server.cpu_seconds()
    results = open_loop(server.host, server.port, requests, evenly(n, rate), keep_body=scenario == "events")
    cpu = server.cpu_seconds() - cpu
    return {"scenario": scenario, "target_rate": rate, "seconds": seconds, "endpoints": summarise(results, seconds),
            "server_cpu_ms_per_request": round(1000 * cpu / n, 2), **server.memory(),
            "first_errors": first_errors(results)}


SLOWEST = 12  # the window's slowest requests listed, to show when in the swap they fell


def mixed(server: ServerProcess, planner: Planner, rates: dict[str, float], seconds: float, batch: int
          ) -> dict[str, Any]:
    """Reads, sessions and events interleaved; a new champion version promoted halfway."""
    timeline: list[tuple[float, Request]] = []
    for kind, rate in rates.items():
        make = {"user": planner.user, "session": planner.session,
                "events": lambda: planner.event_batch(batch)}[kind]
        timeline += [(offset, make()) for offset in evenly(max(1, int(rate * seconds)), rate)]
    timeline.sort(key=lambda pair: pair[0])
    promoted: dict[str, Any] = {}
    started = time.perf_counter()

    def promote() -> None:
        version = server.promote_copy_of_champion()
        promoted.update(version=version, at=time.perf_counter())  # the alias has moved: the window opens

    timer = threading.Timer(seconds / 2, promote)
    timer.start()
    results = open_loop(server.host, server.port, [r for _, r in timeline], [o for o, _ in timeline],
                        keep_body=True)
    timer.join()
    swapped = [r.due + r.latency for r in results if r.label == USER and r.status == 200
               and json.loads(r.body).get("model_version") == promoted.get("version")]
    swap_end = min(swapped) if swapped else None
    window = [r for r in results if promoted and r.due >= promoted["at"] and (swap_end is None or r.due <= swap_end)]
    return {"scenario": "mixed", "rates": rates, "seconds": seconds, "endpoints": summarise(results, seconds),
            "promoted_version": promoted.get("version"),
            "promoted_at_s": round(promoted["at"] - started, 1) if promoted else None,
            "swap_seconds": round(swap_end - promoted["at"], 1) if swap_end and promoted else None,
            "swap_window": {"requests": len(window), "errors": sum(r.status != 200 for r in window),
                            **percentiles(np.array([r.latency for r in window if r.status == 200])),
                            # where in the window the tail fell: seconds after the promotion, ms, endpoint
                            "slowest": [[round(r.due - promoted["at"], 2), round(1000 * r.latency, 1), r.label]
                                        for r in sorted(window, key=lambda r: -r.latency)[:SLOWEST]]},
            "errors": sum(r.status != 200 for r in results), "first_errors": first_errors(results),
            **server.memory()}


def print_table(runs: list[dict[str, Any]], flush: bool = False) -> None:
    columns = ("requests", "errors", "rate", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    print(f"{'scenario':<10} {'endpoint':<32}" + "".join(f"{c:>10}" for c in columns) + f"{'cpu ms/req':>12}")
    for run in runs:
        for label, row in run.get("endpoints", {}).items():
            cells = "".join(f"{'-' if row.get(c) is None else row[c]:>10}" for c in columns)
            cpu = run.get("server_cpu_ms_per_request", "")
            print(f"{run['scenario']:<10} {label:<32}{cells}{cpu:>12}")
            if "events_per_s" in row:
                print(f"{'':<43}events accepted per second: {row['events_per_s']}")
        if run["scenario"] == "mixed":
            w = run["swap_window"]
            print(f"{'':<10} promotion to version {run['promoted_version']} at {run['promoted_at_s']} s, served "
                  f"after {run['swap_seconds']} s; in that window {w['requests']} requests, {w['errors']} errors, "
                  f"p99 {w['p99_ms']} ms")
        if run["scenario"] == "crash":
            print(f"{'':<10} " + run["summary"])
        for error in run.get("first_errors", []):
            print(f"{'':<10} error: {error}")
    if flush:
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="state folder with a champion (default $RECSYS_HOME or ./.recsys)")
    parser.add_argument("--scenario", choices=("all", *SCENARIOS), nargs="+", default=["all"])
    parser.add_argument("--seconds", type=float, default=60, help="seconds per rate")
    parser.add_argument("--user-rate", type=float, nargs="+", default=[300.0], help="GET requests per second")
    parser.add_argument("--session-rate", type=float, nargs="+", default=[200.0], help="sessions per second")
    parser.add_argument("--event-rate", type=float, nargs="+", default=[1000.0], help="events per second")
    parser.add_argument("--event-batch", type=int, default=100, help="events per POST /events (1 to 1000)")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured seconds of each kind first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-timeout", type=float, default=900, help="seconds to wait for the server")
    parser.add_argument("--workers", type=int, default=1, help="server processes (recsys serve --workers)")
    parser.add_argument("--no-pinning", dest="pinning", action="store_false",
                        help="let the workers move between cores (recsys serve --no-pinning)")
    args = parser.parse_args()
    scenarios = SCENARIOS if "all" in args.scenario else tuple(dict.fromkeys(args.scenario))
    if args.seconds <= 0 or not 1 <= args.event_batch <= 1000 or args.workers < 1:
        parser.error("--seconds must be positive, --event-batch between 1 and 1000 and --workers at least 1")

    home = recsys_paths(args.home).home
    token = secrets.token_hex(16)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as scratch:
        served_home = home
        if WRITING & set(scenarios):
            served_home = Path(scratch) / "home"
            shutil.copytree(home, served_home, ignore=shutil.ignore_patterns("landing", "*.run-lock"))
        customers, items = catalogue_sample(served_home, pseudonymization_key())
        planner = Planner(customers, items, token, args.seed)
        reads = [s for s in scenarios if s != "crash"]
        startup: dict[str, Any] = {}
        if reads:
            with ServerProcess(served_home, token, Path(scratch) / "server.log", args.startup_timeout,
                               first_path=planner.user().path, workers=args.workers, pinning=args.pinning) as server:
                startup = {"startup_s": server.startup_s, **server.memory()}
                rates = {"user": args.user_rate, "session": args.session_rate,
                         "events": [r / args.event_batch for r in args.event_rate]}
                for scenario in (s for s in reads if s != "mixed"):
                    if args.warmup:
                        steady(server, planner, scenario, min(rates[scenario]), args.warmup, args.event_batch)
                    for rate in rates[scenario]:
                        runs.append(steady(server, planner, scenario, rate, args.seconds, args.event_batch))
                        print_table(runs[-1:], flush=True)  # a long run shows what it has measured so far
                if "mixed" in reads:
                    runs.append(mixed(server, planner, {"user": args.user_rate[0] / 2,
                                                        "session": args.session_rate[0] / 4,
                                                        "events": args.event_rate[0] / 4 / args.event_batch},
                                      args.seconds, args.event_batch))
        if "crash" in scenarios:
            from benchmarks.serving_crash import crash_run

            runs.append(crash_run(served_home, planner, token, Path(scratch), args.event_rate[0] / 10, args.seconds,
                                  min(args.event_batch, 20), args.startup_timeout))
    pinned = " pinned to cores" if args.pinning and args.workers > 1 else ""
    print(f"Serving {home} on loopback with {args.workers} worker(s){pinned}, open loop, {args.seconds:g} s per rate; "
          f"server start to first answer {startup.get('startup_s', '-')} s, resident memory "
          f"{startup.get('rss_mib', '-')} MiB per worker, {startup.get('total_rss_mib', '-')} MiB in all")
    print_table(runs)
    emit_json({"benchmark": "serving", **machine(), "home": str(home), "workers": args.workers, "pinning": args.pinning,
               "customers": len(customers),
               "items": len(items), **startup, "runs": runs})


if __name__ == "__main__":
    main()
