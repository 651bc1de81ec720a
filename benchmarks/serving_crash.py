"""The serving benchmark's crash run: is every acknowledged event in the warehouse exactly once after a SIGKILL?

Events stream into ``POST /events``; halfway the server is killed with SIGKILL, so no handler runs and whatever it
had not written is gone. It is started again (which seals the files the killed process left open) and stopped
cleanly, then one tick of the landing sensor runs the data job over the landing folder, as the daemon would. Every
event id the killed server answered 200 for (and did not list as rejected) must be kept exactly once: a row of
``marts.fct_interactions``, or a repeated view merged into one; ids it never acknowledged may be there or not (the client would retry them).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.load import evenly, open_loop
from benchmarks.serving_server import ServerProcess
from orchestration.store.warehouse import Warehouse


def acknowledged_ids(requests, results) -> set[str]:
    """Event ids of the batches answered 200, less those the answer rejected."""
    acked: set[str] = set()
    for request, result in zip(requests, results):
        if result.status != 200:
            continue
        rejected = {r["index"] for r in json.loads(result.body).get("rejected", [])}
        acked |= {e["event_id"] for i, e in enumerate(request.body["events"]) if i not in rejected}
    return acked


def crash_run(home: Path, planner, token: str, scratch: Path, batches_per_s: float, seconds: float, batch: int,
              timeout: float) -> dict[str, Any]:
    from orchestration.apps.replay import Replayer

    shutil.rmtree(home / "landing", ignore_errors=True)  # only this run's events are counted
    log = scratch / "crash-server.log"
    server = ServerProcess(home, token, log, timeout).start()
    n = max(2, int(batches_per_s * seconds))
    requests = [planner.event_batch(batch) for _ in range(n)]
    killer = threading.Timer(seconds / 2, server.kill)
    killer.start()
    try:
        results = open_loop(server.host, server.port, requests, evenly(n, batches_per_s), keep_body=True)
    finally:
        killer.join()
        server.kill()
    acked = acknowledged_ids(requests, results)
    sent = {e["event_id"] for r in requests for e in r.body["events"]}
    with ServerProcess(home, token, log, timeout):
        pass  # a start seals what the killed process left open; a clean stop closes its own files
    landed = sorted(p.name for p in (home / "landing").iterdir()) if (home / "landing").exists() else []
    runs = Replayer(home, {}, log=lambda message: None).landing_tick()
    with Warehouse(home=str(home)).connect(read_only=True) as con:
        # A view repeating the same customer's view of the same item within seconds is kept but merged into the
        # first (int_interactions__views_collapsed), so it is no row of fct_interactions: count the kept events.
        counts = Counter(dict(con.execute(
            "select event_id, count(*) from intermediate.int_interactions__views_collapsed where event_id like ? "
            "group by event_id", [f"bench-{planner.run_id}-%"]).fetchall()))
        in_facts, collapsed = con.execute(
            "select count(*) filter (where not is_collapsed), count(*) filter (where is_collapsed) "
            "from intermediate.int_interactions__views_collapsed where event_id like ?",
            [f"bench-{planner.run_id}-%"]).fetchone()
    missing = sorted(acked - set(counts))
    repeated = sorted(i for i, c in counts.items() if c > 1)
    unacknowledged_in = len(set(counts) - acked)
    ok = not missing and not repeated and all(r.success for r in runs)
    summary = (f"crash: {len(acked):,} of {len(sent):,} events acknowledged before the SIGKILL; after a restart and "
               f"one landing tick ({len(runs)} run(s) over {len(landed)} landed folder(s)) {len(missing)} "
               f"acknowledged events missing, {len(repeated)} repeated, {unacknowledged_in} unacknowledged ones "
               f"landed too ({in_facts:,} rows of fct_interactions, {collapsed:,} repeated views merged into them): "
               f"{'PASSED' if ok else 'FAILED'}")
    return {"scenario": "crash", "passed": ok, "sent": len(sent), "acknowledged": len(acked),
            "missing": len(missing), "repeated": len(repeated), "unacknowledged_landed": unacknowledged_in,
            "fct_interactions_rows": in_facts, "collapsed_views": collapsed,
            "landed_folders": landed, "runs_succeeded": sum(r.success for r in runs), "runs": len(runs),
            "missing_sample": missing[:5], "summary": summary}
