"""What one ``POST /events`` of 100 events costs in-process, without HTTP: the whole route and its parts.

    python -m benchmarks.events_cost --home PATH [--batches 300] [--batch 100]

Loads the champion of ``--home`` as ``recsys serve`` does (one thread for torch, BLAS and OpenMP; not warmed: an
event only drops a customer's kept answer) and posts batches shaped as the serving benchmark's (known customers
and catalogue items; views, carts, favourites and purchases) through the app's ASGI interface. The events log
writes to a scratch folder, so ``--home`` is only read. Then the route's parts one at a time, on the same
batches: reading the body into the request model, the checks, the fsynced append and recording in the served
model. Reported per batch: the process's CPU time (every thread's), in ms; the last line is one JSON object with
the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from benchmarks.serving_server import champion_in_process
from orchestration.ingest.event_rules import check_event
from orchestration.serving.auth import EVENTS, ApiAccess
from orchestration.serving.champion import ChampionHolder, Served
from orchestration.serving.events import EventBatch, add_event_route, event_settings, record_served
from orchestration.serving.limits import BodyLimit

EVENT_MIX = {"view": 0.7, "cart": 0.15, "favourite": 0.05, "purchase": 0.1}
TOKEN = "events-cost-benchmark-token-0123456789"


def batches(customers: list[str], items: list[str], n: int, size: int, seed: int = 0) -> list[dict]:
    """``n`` bodies of ``size`` events with distinct ids, as the serving benchmark posts them."""
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies, number = [], 0
    for _ in range(n):
        events = []
        for kind in rng.choice(list(EVENT_MIX), size=size, p=list(EVENT_MIX.values())):
            number += 1
            events.append({"event_id": f"cost-{seed}-{number}", "user_id": customers[rng.integers(len(customers))],
                           "item_id": items[rng.integers(len(items))], "event_type": str(kind), "timestamp": now,
                           **({"quantity": 1} if kind == "purchase" else {})})
        bodies.append({"events": events})
    return bodies


def cpu_ms(run, n: int) -> float:
    """CPU ms per call of ``run()``, which handles ``n`` batches."""
    started = time.process_time()
    run()
    return round((time.process_time() - started) / n * 1000, 3)


def route(app: FastAPI, encoded: list[bytes]) -> None:
    """Post the JSON bodies ``encoded`` one at a time straight to the app's ASGI interface (no client, no HTTP:
    the CPU is the server's); each must be accepted whole."""

    async def post(body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"authorization", f"Bearer {TOKEN}".encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/events", "raw_path": b"/events", "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("bench", 80)}
        sent, answer = False, []

        async def receive() -> dict:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            answer.append(message)

        await app(scope, receive, send)
        status, text = answer[0]["status"], b"".join(m.get("body", b"") for m in answer[1:])
        if status != 200 or json.loads(text)["rejected"]:
            raise SystemExit(f"POST /events answered {status}: {text[:300]!r}")

    async def post_all() -> None:
        for body in encoded:
            await post(body)

    asyncio.run(post_all())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="a RECSYS_HOME with a champion (only read)")
    parser.add_argument("--batches", type=int, default=300, help="batches per measurement")
    parser.add_argument("--batch", type=int, default=100, help="events per batch")
    args = parser.parse_args(argv)
    with champion_in_process(Path(args.home)) as champion, tempfile.TemporaryDirectory() as scratch:
        holder = ChampionHolder(champion.warehouse, champion.tracking, champion.key, reload_seconds=3600)
        holder.current = Served(champion.service, {"version": 0})
        customers, items = champion.customers, champion.items
        gc.collect()
        gc.freeze()  # as the holder does once a service is in: the collector's full passes skip what it holds
        app = FastAPI()
        app.add_middleware(BodyLimit)
        app.state.champion = holder
        event_log = add_event_route(app, ApiAccess(((TOKEN, frozenset({EVENTS})),)), scratch)
        _, rules = event_settings()
        n = args.batches
        with event_log:
            route(app, [json.dumps(b).encode() for b in batches(customers, items, 5, args.batch, seed=1)])  # caches
            planned = [json.dumps(body).encode() for body in batches(customers, items, n, args.batch, seed=2)]
            figures = {"route": cpu_ms(lambda: route(app, planned), n)}
            models = [EventBatch.model_validate(body) for body in batches(customers, items, n, args.batch, seed=3)]
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            bodies = batches(customers, items, n, args.batch, seed=3)
            figures["request_model"] = cpu_ms(lambda: [EventBatch.model_validate(body) for body in bodies], n)
            checked = []
            figures["checks"] = cpu_ms(lambda: checked.extend(
                [check_event(vars(event), rules, now) for event in model.events] for model in models), n)
            figures["append"] = cpu_ms(lambda: [event_log.append([e.line for e in events]) for events in checked], n)
            figures["record"] = cpu_ms(lambda: [record_served(app, events) for events in checked], n)
        gc.unfreeze()  # handed back before the objects go, as the holder does at shutdown
    print(f"CPU per batch of {args.batch} events, in-process (ms):")
    for name, value in figures.items():
        print(f"{name:>14}: {value:7.3f}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
