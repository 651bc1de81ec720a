"""Serving latency: the HTTP API at a fixed request rate, per endpoint.

    python -m benchmarks.serving [--home PATH] [--rate 20] [--seconds 30] [--port 0]

Starts ``recsys serve`` over the champion of ``--home`` as a child process on loopback (its own interpreter, so
the load generator does not share its GIL), waits until ``/health`` answers, then sends requests open-loop:
request i is due at t0 + i / rate whatever the earlier ones are doing, sent by a small thread pool. Requests
alternate between ``GET /recommendations/{user}`` (customers with purchases, drawn with a fixed seed) and
``POST /recommendations/session`` (3 to 5 items the champion recommends, same seed). Latency runs from the
time a request was due, so a server that falls behind shows it in the tail instead of sending fewer requests.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import emit_json, machine
from orchestration.store.paths import recsys_paths
from orchestration.store.privacy import pseudonymization_key, pseudonymize
from orchestration.store.warehouse import Warehouse

USER = "GET /recommendations/{user_id}"
SESSION = "POST /recommendations/session"
RAW_CUSTOMERS = {"raw.order_lines": "customer_id", "raw.interactions": "user_id"}  # per data source layout


def known_customers_and_items(home: str, key: str) -> tuple[list[str], list[str]]:
    """(shop customer ids with purchases, item ids the batch recommendations hold), both sorted.

    Customer ids are taken from the raw tables and kept when their pseudonym has purchases in the marts: the
    API speaks raw ids, the marts only pseudonyms."""
    with Warehouse(home=home).connect(read_only=True) as con:
        tables = {f"{s}.{t}" for s, t in con.execute(
            "select table_schema, table_name from information_schema.tables").fetchall()}
        raw: set[str] = set()
        for table, column in RAW_CUSTOMERS.items():
            if table in tables:
                raw |= {r for (r,) in con.execute(f"select distinct {column} from {table} "
                                                  f"where trim({column}) <> ''").fetchall()}
        buyers = {u for (u,) in con.execute("select distinct user_id from marts.fct_interactions "
                                            "where event_type = 'purchase' and user_id is not null").fetchall()}
        # Items of the batch table are items the champion knows; fct_interactions when there is no batch yet.
        source = ("ml.user_recommendations" if "ml.user_recommendations" in tables
                  else "(select item_id from marts.fct_interactions where event_type = 'purchase')")
        items = sorted(str(i) for (i,) in con.execute(f"select distinct item_id from {source}").fetchall())
    customers = sorted(r for r in raw if pseudonymize(r, key) in buyers)
    if not customers or len(items) < 5:
        raise SystemExit(f"{home}: no customers with purchases or fewer than 5 items; materialize the pipeline first")
    return customers, items


def plan(customers: list[str], items: list[str], n: int, seed: int) -> list[tuple[str, str, Any]]:
    """``n`` requests (endpoint, path, JSON body), alternating customers and sessions, seeded."""
    rng = np.random.default_rng(seed)
    requests = []
    for i in range(n):
        if i % 2 == 0:
            requests.append((USER, f"/recommendations/{customers[rng.integers(len(customers))]}", None))
        else:
            session = rng.choice(items, size=int(rng.integers(3, 6)), replace=False).tolist()
            requests.append((SESSION, "/recommendations/session", {"items": session, "k": 10}))
    return requests


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: str, port: int, log: Path, timeout: float) -> tuple[subprocess.Popen, str, dict]:
    """``recsys serve`` in a child process; returns it, its base URL and its /health once that answers 200."""
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "orchestration.apps.cli", "--home", home, "serve", "--host", "127.0.0.1",
               "--port", str(port), "--reload-seconds", "3600"]
    with log.open("w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            health = httpx.get(f"{base}/health", timeout=5)
            if health.status_code == 200:
                return server, base, health.json()
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.5)
    stop_server(server)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def run_load(base: str, requests: list[tuple[str, str, Any]], rate: float, workers: int) -> tuple[list, float]:
    """Send ``requests`` open-loop at ``rate`` per second; returns (endpoint, latency s, ok) per request and
    the seconds from the first due time to the last answer."""
    local = threading.local()  # one connection pool per worker thread

    def send(endpoint: str, path: str, body: Any, due: float) -> tuple[str, float, bool, float]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=60)
        try:
            response = local.client.post(path, json=body) if body is not None else local.client.get(path)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        done = time.perf_counter()
        return endpoint, done - due, ok, done

    with ThreadPoolExecutor(max_workers=workers) as pool:
        started = time.perf_counter() + 0.05
        futures = []
        for i, (endpoint, path, body) in enumerate(requests):
            due = started + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            futures.append(pool.submit(send, endpoint, path, body, due))
        results = [future.result() for future in futures]
    elapsed = max(done for *_, done in results) - started
    return [(endpoint, latency, ok) for endpoint, latency, ok, _ in results], elapsed


def summarise(results: list, elapsed: float) -> dict[str, dict[str, float]]:
    figures = {}
    for endpoint in (USER, SESSION):
        mine = [(latency, ok) for e, latency, ok in results if e == endpoint]
        good = np.array([latency for latency, ok in mine if ok]) * 1000
        row: dict[str, float] = {"requests": len(mine), "errors": sum(not ok for _, ok in mine),
                                 "achieved_rate": round(len(mine) / elapsed, 2)}
        for name, q in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("max_ms", 100)):
            row[name] = round(float(np.percentile(good, q)), 1) if len(good) else None
        figures[endpoint] = row
    return figures


def print_figures(figures: dict[str, dict[str, float]], title: str) -> None:
    columns = ("requests", "errors", "p50_ms", "p90_ms", "p99_ms", "max_ms", "achieved_rate")
    width = max(len(endpoint) for endpoint in figures)
    print(title)
    print("-" * len(title))
    print(f"{'endpoint':<{width}}" + "".join(f"  {c:>{len(c)}}" for c in columns))
    for endpoint, row in figures.items():
        print(f"{endpoint:<{width}}" + "".join(f"  {'-' if row[c] is None else row[c]:>{len(c)}}" for c in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="state folder with a champion (default $RECSYS_HOME or ./.recsys)")
    parser.add_argument("--rate", type=float, default=20, help="requests per second, both endpoints together")
    parser.add_argument("--seconds", type=float, default=30, help="how long to send requests")
    parser.add_argument("--port", type=int, default=0, help="port for the server (0: any free one)")
    parser.add_argument("--workers", type=int, default=8, help="client threads sending requests")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests sent first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-timeout", type=float, default=600, help="seconds to wait for the server")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")

    home = str(recsys_paths(args.home).home)
    customers, items = known_customers_and_items(home, pseudonymization_key())
    requests = plan(customers, items, max(2, int(args.rate * args.seconds)), args.seed)
    warmup = plan(customers, items, args.warmup, args.seed + 1)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        server, base, health = start_server(home, args.port or _free_port(), Path(scratch) / "server.log",
                                            args.startup_timeout)
        startup_s = time.perf_counter() - started
        try:
            run_load(base, warmup, rate=max(args.rate, 10), workers=args.workers)
            results, elapsed = run_load(base, requests, args.rate, args.workers)
        finally:
            stop_server(server)
    endpoints = summarise(results, elapsed)
    print_figures(endpoints, f"Serving latency, model version {health['model_version']}, {args.rate:g} requests/s "
                             f"for {args.seconds:g} s, open loop, {args.workers} client threads")
    emit_json({
        "benchmark": "serving",
        **machine(),
        "home": home,
        "model_version": health["model_version"],
        "as_of": health["as_of"],
        "known_customers": len(customers),
        "items": len(items),
        "target_rate": args.rate,
        "seconds": args.seconds,
        "workers": args.workers,
        "achieved_rate": round(len(results) / elapsed, 2),
        "server_startup_s": round(startup_s, 1),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "endpoints": endpoints,
    })


if __name__ == "__main__":
    main()
