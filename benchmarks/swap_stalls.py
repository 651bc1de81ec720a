"""How long a champion swap keeps the serving process's interpreter from its event loop, and where.

    python -m benchmarks.swap_stalls --home PATH [--threshold-ms 5] [--top 15]

A reload runs on a thread of the serving process while the event loop answers requests. A single C call that
keeps the interpreter lock (unpickling, a DuckDB result turned into pandas, a big pandas operation, a full garbage
collection) stops every other thread for its whole length, whatever the switch interval. Here a watchdog thread
stands in for the event loop: it sleeps 1 ms at a time and records how late it woke, and when late, where the
loading thread stood (its Python stack: the call that held the lock has just returned, or is still running where
it gave the lock back) and how much CPU it used meanwhile (on a shared machine the watchdog also waits for a core).

The home is copied to a scratch folder (a copy of its champion is registered and promoted there); the copy's
current champion is loaded as the one serving, then ``ChampionHolder.check_now`` loads and swaps in the promoted
copy, as ``recsys serve`` does when the alias moves. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import gc
import linecache
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit_json, machine

PERIOD_S = 0.001  # the watchdog's sleep: an event loop with work queued wakes about this often
OWN_CODE = ("orchestration", "recmodels")  # frames of these packages name the step that stalled


def _short(frame) -> str:
    parts = Path(frame.f_code.co_filename).parts
    return f"{'/'.join(parts[-2:])}:{frame.f_code.co_name}:{frame.f_lineno}"


def _site(frame) -> tuple[str, str]:
    """(innermost frame, innermost frame of this project's code with its source line) of a stack."""
    inner, own = _short(frame) if frame else "-", "-"
    while frame is not None:
        if any(f"/{name}/" in frame.f_code.co_filename for name in OWN_CODE):
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            own = f"{_short(frame)}  {line[:60]}"
            break
        frame = frame.f_back
    return inner, own


class Watchdog(threading.Thread):
    """Wakes every ``PERIOD_S`` and records how late; when later than ``threshold_s``, where ``watched`` stood and
    how much CPU it used meanwhile. On a busy machine a wake is also late when the cores were taken by others: the
    part of a stall that counts as the loading thread's is the CPU it used meanwhile (an upper bound: it may have run
    Python that gave the lock back, while the watchdog waited for a core rather than for the lock)."""

    def __init__(self, watched: threading.Thread, threshold_s: float):
        super().__init__(name="watchdog", daemon=True)
        self.watched, self.threshold_s = watched, threshold_s
        self.lateness: list[float] = []
        self.held: list[float] = []  # per wake, the part of its lateness the watched thread ran through
        self.stalls: list[tuple[float, float, float, str, str]] = []  # (late s, its CPU s, at s, inner, own)
        self.stop = threading.Event()
        self.started_at = time.perf_counter()

    def run(self) -> None:
        clock, used = None, 0.0
        while not self.stop.is_set():
            before = time.perf_counter()
            time.sleep(PERIOD_S)
            late = time.perf_counter() - before - PERIOD_S
            if clock is None and self.watched.ident is not None:
                clock = time.pthread_getcpuclockid(self.watched.ident)
                used = time.clock_gettime(clock)
            ran = 0.0
            if clock is not None and self.watched.is_alive():
                now = time.clock_gettime(clock)
                ran, used = now - used, now
            self.lateness.append(late)
            self.held.append(min(late, ran))
            if min(late, ran) > self.threshold_s:
                frame = sys._current_frames().get(self.watched.ident)
                self.stalls.append((late, ran, before - self.started_at, *_site(frame)))


def prepare(source: Path, scratch: Path) -> tuple[Any, int]:
    """A copy of ``source`` whose champion serves (loaded, not warmed) in a ``ChampionHolder``, and the version of
    a copy of it registered and promoted: what the holder's next check swaps in."""
    from benchmarks.serving_server import promote_copy_of_champion
    from orchestration.registry.promotion import current_champion
    from orchestration.registry.tracking import MLflowTracking
    from orchestration.serving.champion import ChampionHolder, Served
    from orchestration.serving.server import one_thread_kernels
    from orchestration.serving.service import RecommendationService
    from orchestration.store.privacy import pseudonymization_key
    from orchestration.store.warehouse import Warehouse

    home = scratch / "home"
    shutil.copytree(source, home, ignore=shutil.ignore_patterns("landing", "*.run-lock"))
    one_thread_kernels()  # as recsys serve runs: one-thread kernels, a 1 ms switch interval
    holder = ChampionHolder(Warehouse(home=str(home)), MLflowTracking(home=str(home)), pseudonymization_key(), 0)
    champion = current_champion(holder.client)
    promoted = promote_copy_of_champion(home)
    gc.collect()  # what a started server holds stays out of the collector's passes
    gc.freeze()
    service = RecommendationService.from_registry(holder.client, int(champion["version"]), holder.warehouse,
                                                  holder.key)
    holder.current = Served(service, champion)  # serving, as after start-up (its answers are not needed here)
    return holder, promoted


def collector_pass() -> dict[str, Any]:
    """The objects a collector pass walks now (those not frozen) and how long a full pass takes."""
    started = time.perf_counter()
    gc.collect()
    return {"unfrozen_objects": len(gc.get_objects()), "frozen_objects": gc.get_freeze_count(),
            "full_pass_ms": round((time.perf_counter() - started) * 1000, 1)}


def measure(holder, threshold_s: float) -> dict[str, Any]:
    """Run one refresh on its own thread under the watchdog; its figures."""
    outcome: dict[str, Any] = {}

    def reload() -> None:
        started = time.perf_counter()
        outcome["swapped"] = holder.check_now(timeout=0) and holder.last_swapped
        outcome["seconds"] = time.perf_counter() - started

    loader = threading.Thread(target=reload, name="champion-reload")
    watchdog = Watchdog(loader, threshold_s)
    watchdog.start()
    time.sleep(0.2)  # the watchdog's own pace first
    loader.start()
    loader.join()
    watchdog.stop.set()
    watchdog.join()
    late_ms, held_ms = np.asarray(watchdog.lateness) * 1000, np.asarray(watchdog.held) * 1000
    held = sorted(watchdog.stalls, key=lambda stall: -min(stall[0], stall[1]))
    by_site: dict[str, list[float]] = defaultdict(list)
    for late, ran, _, _, own in held:
        by_site[own].append(min(late, ran) * 1000)
    return {"swapped": outcome.get("swapped"), "version": holder.current.version, **collector_pass(),
            "refresh_s": round(outcome.get("seconds", float("nan")), 1), "wakes": len(late_ms),
            "held": _figures(held_ms, threshold_s), "any": _figures(late_ms, threshold_s),
            "longest": [{"late_ms": round(late * 1000, 1), "loader_cpu_ms": round(ran * 1000, 1), "at_s": round(at, 2),
                         "innermost": inner, "own": own} for late, ran, at, inner, own in held],
            "by_site": sorted(({"own": site, "count": len(lates), "max_ms": round(max(lates), 1),
                                "total_ms": round(sum(lates), 1)} for site, lates in by_site.items()),
                              key=lambda row: -row["max_ms"])}


def _figures(late_ms: np.ndarray, threshold_s: float) -> dict[str, Any]:
    return {"p99_ms": round(float(np.percentile(late_ms, 99)), 2), "max_ms": round(float(late_ms.max()), 1),
            "stalled_s": round(float(late_ms[late_ms > threshold_s * 1000].sum()) / 1000, 2),
            **{f"over_{n}ms": int((late_ms > n).sum()) for n in (5, 20, 50, 100)}}


def print_report(figures: dict[str, Any], top: int) -> None:
    print(f"Refresh to version {figures['version']}: {figures['refresh_s']} s, swapped {figures['swapped']}; "
          f"the watchdog woke {figures['wakes']} times")
    for name, title in (("held", "while the loading thread ran"), ("any", "for any reason (busy cores too)")):
        row = figures[name]
        print(f"  late {title}: p99 {row['p99_ms']} ms, max {row['max_ms']} ms, {row['stalled_s']} s in stalls; "
              f"over 5/20/50/100 ms: {row['over_5ms']}/{row['over_20ms']}/{row['over_50ms']}/{row['over_100ms']}")
    print(f"Afterwards a collector pass walks {figures['unfrozen_objects']:,} objects ({figures['frozen_objects']:,} "
          f"frozen) in {figures['full_pass_ms']} ms")
    print(f"\nStalls, by the loading thread's CPU in them\n{'late ms':>8} {'its CPU':>8} {'at s':>7}  "
          f"{'innermost frame':<44} where in this project")
    for row in figures["longest"][:top]:
        print(f"{row['late_ms']:>8} {row['loader_cpu_ms']:>8} {row['at_s']:>7}  {row['innermost'][:44]:<44} "
              f"{row['own']}")
    print(f"\nBy site, the loading thread's CPU in stalls\n{'max ms':>8} {'total ms':>9} {'count':>6}  "
          "where in this project")
    for row in figures["by_site"][:top]:
        print(f"{row['max_ms']:>8} {row['total_ms']:>9} {row['count']:>6}  {row['own']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True, help="state folder with a champion (copied, never written)")
    parser.add_argument("--threshold-ms", type=float, default=5.0, help="a wake this late counts as a stall")
    parser.add_argument("--top", type=int, default=15, help="stalls and sites listed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swap-stalls-") as scratch:
        holder, version = prepare(Path(args.home), Path(scratch))
        figures = measure(holder, args.threshold_ms / 1000)
        holder.close(timeout=60)
    if figures["version"] != version:
        raise SystemExit(f"the refresh did not swap in version {version}")
    print_report(figures, args.top)
    figures["longest"] = figures["longest"][:args.top]
    emit_json({"benchmark": "swap_stalls", **machine(), "home": args.home, "threshold_ms": args.threshold_ms,
               **figures})


if __name__ == "__main__":
    main()
