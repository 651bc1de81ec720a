"""The crash test in small: `recsys serve` on a fresh home (no champion) takes a stream of event batches, is killed
with SIGKILL mid-stream, restarts (recovering its open file), the client retries what was not acknowledged, and
after the landing folder's ingest and dbt every acknowledged event is in fct_interactions exactly once."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx

from orchestration.apps.headless import answers, free_port, stop_session, wait_until
from orchestration.ingest.event_log import OPEN_PREFIX, SEALED_PREFIX
from tests.integration.test_api_events import ingest_landing

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "crash-test-token-0123456789"
BATCH = 20  # events per request
KILL_AFTER = 40  # acknowledged batches before the kill


def _serve(home: Path, port: int) -> subprocess.Popen:
    # No rotation while it runs (tests/unit/orchestration/test_event_log.py has those), so the kill always finds a
    # file open: between a rotation and the next event there is none.
    env = {**os.environ, "RECSYS_API_TOKEN": TOKEN, "RECSYS_EVENTS_MAX_AGE_SECONDS": "600"}
    with open(home.parent / f"serve-{port}-{time.monotonic_ns()}.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "orchestration.apps.cli", "--home", str(home), "serve",
                                    "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)

    def up() -> bool:
        assert process.poll() is None, f"recsys serve exited with {process.returncode}"
        return answers(f"http://127.0.0.1:{port}/")  # the page: /health is 503 without a champion

    wait_until("recsys serve to answer", up, timeout=60)
    return process


def _batch(number: int) -> list[dict]:
    return [{"event_id": f"b{number:04d}-{i:02d}", "item_id": f"i{(number * BATCH + i) % 97}",
             "event_type": ("cart", "favourite", "purchase")[i % 3],
             "timestamp": f"2024-05-01T{number // 60 % 24:02d}:{number % 60:02d}:{i:02d}Z", "quantity": 1 + i % 2,
             **({"session_id": f"s{number}"} if i % 5 == 0 else {"user_id": f"u{i % 7}"})}
            for i in range(BATCH)]


def _post(client: httpx.Client, batch: list[dict]) -> list[str]:
    """The acknowledged event ids: all of them (every event is valid), or an exception."""
    answer = client.post("/events", json={"events": batch})
    answer.raise_for_status()
    assert answer.json() == {"accepted": len(batch), "rejected": []}
    return [event["event_id"] for event in batch]


def test_acknowledged_events_survive_a_kill_and_are_stored_exactly_once(tmp_path):
    home, port = tmp_path / "home", free_port()
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    acknowledged, unanswered = [], []
    server = _serve(home, port)

    def stream() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            for number in itertools.count():
                batch = _batch(number)
                try:
                    acknowledged.append(_post(client, batch))
                except httpx.HTTPError:  # the server died under this request: not acknowledged
                    unanswered.append(batch)
                    return

    sender = threading.Thread(target=stream)
    try:
        sender.start()
        wait_until("acknowledged batches", lambda: len(acknowledged) >= KILL_AFTER, timeout=60, interval=0.01)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        sender.join(timeout=30)
        landing = home / "landing"
        assert [p for p in landing.iterdir() if p.name.startswith(OPEN_PREFIX)], "the kill left no open file"
        assert unanswered and not sender.is_alive()

        server = _serve(home, port)  # recovery seals what the killed server left open
        assert not [p for p in landing.iterdir() if p.name.startswith(OPEN_PREFIX)]
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            acknowledged.append(_post(client, unanswered[0]))  # the client retries what was not acknowledged
            acknowledged.append(_post(client, _batch(10_000)))
    finally:
        stop_session(server)  # SIGTERM: a clean shutdown seals the open file
    assert not [p for p in landing.iterdir() if p.name.startswith(OPEN_PREFIX)]
    # The killed server's file, sealed by the restart's recovery, and the restarted server's, sealed at its stop.
    assert len([p for p in landing.iterdir() if p.name.startswith(SEALED_PREFIX)]) == 2

    ingest_landing(home)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        stored = dict(con.execute("select event_id, count(*) from marts.fct_interactions group by event_id").fetchall())
        balanced = con.execute("select bool_and(is_balanced) from marts.reconciliation").fetchone()
    ids = [event_id for batch in acknowledged for event_id in batch]
    assert len(ids) == len(set(ids)) >= (KILL_AFTER + 2) * BATCH
    assert {event_id: stored.get(event_id, 0) for event_id in ids} == dict.fromkeys(ids, 1)
    assert set(stored.values()) == {1} and balanced[0]
