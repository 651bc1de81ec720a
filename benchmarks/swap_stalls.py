"""How long a champion swap keeps the serving process's interpreter from its event loop, and where.

    python -m benchmarks.swap_stalls --home PATH [--threshold-ms 5] [--top 15]

A reload builds the next service on a thread of the serving process while the event loop answers requests. A
single C call that keeps the interpreter lock (unpickling, a DuckDB result turned into pandas, a big pandas
operation, a full garbage collection) stops every other thread for its whole length, whatever the switch interval.
Here a watchdog thread stands in for the event loop: it sleeps 1 ms at a time and records how late it woke, and
when late, where the loading thread stood (its Python stack: the call that held the lock has just returned, or is
still running where it gave the lock back).

The home is copied to a scratch folder (a copy of its champion is registered and promoted there); the copy's current
champion is loaded as the one serving, then ``ChampionHolder.refresh`` loads and swaps in the promoted copy, as
``recsys serve`` does when the alias moves. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
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
    """Wakes every ``PERIOD_S`` and records how late; when later than ``threshold_s``, where ``watched`` stood."""

    def __init__(self, watched: threading.Thread, threshold_s: float):
        super().__init__(name="watchdog", daemon=True)
        self.watched, self.threshold_s = watched, threshold_s
        self.lateness: list[float] = []
        self.stalls: list[tuple[float, float, str, str]] = []  # (late s, at s, innermost frame, own frame)
        self.stop = threading.Event()
        self.started_at = time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            before = time.perf_counter()
            time.sleep(PERIOD_S)
            late = time.perf_counter() - before - PERIOD_S
            self.lateness.append(late)
            if late > self.threshold_s and self.watched.ident is not None:
                frame = sys._current_frames().get(self.watched.ident)
                self.stalls.append((late, before - self.started_at, *_site(frame)))


def prepare(source: Path, scratch: Path) -> tuple[Any, int]:
    """A copy of ``source`` whose champion serves (loaded, not warmed) in a ``ChampionHolder``, and the version of
    a copy of it registered and promoted: what the holder's next refresh swaps in."""
    import gc

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
    service = RecommendationService.from_registry(holder.client, int(champion["version"]), holder.warehouse,
                                                  holder.key)
    holder.current = Served(service, champion)  # serving, as after start-up (its answers are not needed here)
    gc.collect()
    gc.freeze()
    return holder, promote_copy_of_champion(home)


def measure(holder, threshold_s: float) -> dict[str, Any]:
    """Run one refresh on its own thread under the watchdog; its figures."""
    outcome: dict[str, Any] = {}

    def reload() -> None:
        started = time.perf_counter()
        outcome["swapped"] = holder.refresh()
        outcome["seconds"] = time.perf_counter() - started

    loader = threading.Thread(target=reload, name="champion-reload")
    watchdog = Watchdog(loader, threshold_s)
    watchdog.start()
    time.sleep(0.2)  # the watchdog's own pace first
    loader.start()
    loader.join()
    watchdog.stop.set()
    watchdog.join()
    late_ms = np.asarray(watchdog.lateness) * 1000
    by_site: dict[str, list[float]] = defaultdict(list)
    for late, _, _, own in watchdog.stalls:
        by_site[own].append(late * 1000)
    return {"swapped": outcome.get("swapped"), "version": holder.current.version,
            "refresh_s": round(outcome.get("seconds", float("nan")), 1), "wakes": len(late_ms),
            "lateness_p50_ms": round(float(np.percentile(late_ms, 50)), 2),
            "lateness_p99_ms": round(float(np.percentile(late_ms, 99)), 2),
            "lateness_max_ms": round(float(late_ms.max()), 1),
            "stalled_s": round(float(late_ms[late_ms > threshold_s * 1000].sum()) / 1000, 2),
            **{f"stalls_over_{n}ms": int((late_ms > n).sum()) for n in (5, 20, 50, 100)},
            "longest": [{"late_ms": round(late * 1000, 1), "at_s": round(at, 2), "innermost": inner, "own": own}
                        for late, at, inner, own in sorted(watchdog.stalls, reverse=True)],
            "by_site": sorted(({"own": site, "count": len(lates), "max_ms": round(max(lates), 1),
                                "total_ms": round(sum(lates), 1)} for site, lates in by_site.items()),
                              key=lambda row: -row["max_ms"])}


def print_report(figures: dict[str, Any], top: int) -> None:
    print(f"Refresh to version {figures['version']}: {figures['refresh_s']} s, swapped {figures['swapped']}; "
          f"watchdog woke {figures['wakes']} times, late p50 {figures['lateness_p50_ms']} ms, "
          f"p99 {figures['lateness_p99_ms']} ms, max {figures['lateness_max_ms']} ms; "
          f"{figures['stalled_s']} s of stalls; over 5/20/50/100 ms: {figures['stalls_over_5ms']}/"
          f"{figures['stalls_over_20ms']}/{figures['stalls_over_50ms']}/{figures['stalls_over_100ms']}")
    print(f"\n{'late ms':>8} {'at s':>7}  {'innermost frame':<48} where in this project")
    for row in figures["longest"][:top]:
        print(f"{row['late_ms']:>8} {row['at_s']:>7}  {row['innermost'][:48]:<48} {row['own']}")
    print(f"\n{'max ms':>8} {'total ms':>9} {'count':>6}  where in this project")
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
