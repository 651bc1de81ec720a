"""The served API as a child process for the serving benchmark: start, measure, promote, kill."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from orchestration.apps.headless import free_port
from orchestration.store.privacy import pseudonymize
from orchestration.store.warehouse import Warehouse

if TYPE_CHECKING:
    from orchestration.registry.tracking import MLflowTracking
    from orchestration.serving.service import RecommendationService

RAW_CUSTOMERS = {"raw.order_lines": "customer_id", "raw.interactions": "user_id"}  # per data source layout
READY_LINE = "Application startup complete"  # uvicorn's, once per worker whose lifespan has started
RELOAD_SECONDS = 2  # how often the served app checks the registry: the mixed run's promotion must be seen soon


def catalogue_sample(home: Path, key: str) -> tuple[list[str], list[str]]:
    """(shop customer ids with purchases, catalogue item ids), both sorted.

    Customer ids are taken from the raw tables and kept when their pseudonym has purchases in the marts: the API
    speaks raw ids, the marts only pseudonyms."""
    with Warehouse(home=str(home)).connect(read_only=True) as con:
        tables = {f"{s}.{t}" for s, t in con.execute(
            "select table_schema, table_name from information_schema.tables").fetchall()}
        raw: set[str] = set()
        for table, column in RAW_CUSTOMERS.items():
            if table in tables:
                raw |= {r for (r,) in con.execute(f"select distinct trim({column}) from {table} "
                                                  f"where trim({column}) <> ''").fetchall()}
        buyers = {u for (u,) in con.execute("select distinct user_id from marts.fct_interactions "
                                            "where event_type = 'purchase' and user_id is not null").fetchall()}
        items = sorted(str(i) for (i,) in con.execute(
            "select distinct item_id from marts.fct_interactions where event_type = 'purchase'").fetchall())
    customers = sorted(r for r in raw if pseudonymize(r, key) in buyers)
    if not customers or len(items) < 5:
        raise SystemExit(f"{home}: no customers with purchases or fewer than 5 items; materialize the pipeline first")
    return customers, items


@dataclass
class InProcessChampion:
    """A home's champion loaded in this process, and what the in-process benchmarks send it."""

    service: RecommendationService
    key: str
    warehouse: Warehouse
    tracking: MLflowTracking
    customers: list[str]
    items: list[str]


@contextlib.contextmanager
def champion_in_process(home: Path) -> Iterator[InProcessChampion]:
    """The champion of ``home`` loaded as ``recsys serve`` loads it, with torch, BLAS and OpenMP on one thread
    while the context lasts, and the customers and items of ``catalogue_sample``."""
    from orchestration.registry.tracking import MLflowTracking
    from orchestration.serving.batching import single_threaded
    from orchestration.serving.service import RecommendationService
    from orchestration.store.privacy import pseudonymization_key

    with single_threaded():
        key = pseudonymization_key()
        warehouse, tracking = Warehouse(home=str(home)), MLflowTracking(home=str(home))
        service = RecommendationService.from_champion(warehouse, tracking, key)
        service.bundle.compile_ranker(warehouse.paths)  # as the server's ChampionHolder does
        customers, items = catalogue_sample(Path(home), key)
        yield InProcessChampion(service, key, warehouse, tracking, customers, items)


class ServerProcess:
    """``recsys serve`` over ``home`` with one token of every scope; the context kills it on exit."""

    def __init__(self, home: Path, token: str, log: Path, timeout: float, first_path: str = "/health",
                 workers: int = 1, pinning: bool = True):
        self.home, self.token, self.log, self.timeout, self.first_path = home, token, log, timeout, first_path
        self.workers, self.pinning = workers, pinning
        self.host, self.port = "127.0.0.1", free_port()
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerProcess:
        env = {**os.environ, "RECSYS_HOME": str(self.home), "RECSYS_API_TOKEN": self.token}
        command = [sys.executable, "-m", "orchestration.apps.cli", "--home", str(self.home), "serve", "--host",
                   self.host, "--port", str(self.port), "--reload-seconds", str(RELOAD_SECONDS),
                   "--workers", str(self.workers), *([] if self.pinning else ["--no-pinning"])]
        started = time.perf_counter()
        with self.log.open("a") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        deadline = started + self.timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                # Each worker takes connections once its own champion is warm: all of them must be.
                if (httpx.get(self.base + self.first_path, timeout=30).status_code == 200
                        and self.log.read_text().count(READY_LINE) >= self.workers):
                    self.startup_s = round(time.perf_counter() - started, 1)
                    return self
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the server did not answer {self.first_path} within {self.timeout:.0f} s:\n"
                         f"{self.log.read_text()[-3000:]}")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """A clean stop (SIGTERM: the server closes its files), killed after 60 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed that was not already."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def processes(self) -> list[int]:
        """The server's pid and its workers' (``--workers``), the supervisor first."""
        pids, found = [self.process.pid], 0
        while found < len(pids):
            children = Path(f"/proc/{pids[found]}/task/{pids[found]}/children")
            pids += [int(pid) for pid in children.read_text().split()] if children.exists() else []
            found += 1
        return pids

    def cpu_seconds(self) -> float:
        """User plus system CPU the server's processes have used so far."""
        total = 0
        for pid in self.processes():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def memory(self) -> dict[str, float]:
        """Resident memory of the largest process (a worker where there are several) now and at its peak, and of
        all of them together now, MiB."""
        kib = []
        for pid in self.processes():
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ":" in line)
            kib.append([int(status[name].split()[0]) if name in status else 0 for name in ("VmRSS", "VmHWM")])
        rss, peak = max(kib)
        return {"rss_mib": round(rss / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
                "total_rss_mib": round(sum(row[0] for row in kib) / 1024, 1)}

    def promote_copy_of_champion(self) -> int:
        """Register the champion's bundle again as a new version and promote it: a real swap of the served model.
        From a process of its own, as the pipeline promotes: in the load generator's process, importing MLflow and
        writing the registry would keep its interpreter from sending requests, and their latency (counted from when
        each was due) would show the generator's stall as the server's."""
        completed = subprocess.run([sys.executable, "-m", __name__, "promote-copy", str(self.home)],
                                   capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"promoting a copy of the champion failed: {completed.stderr.strip()[-2000:]}")
        return int(completed.stdout.split()[-1])


def promote_copy_of_champion(home: Path) -> int:
    """Register the champion of ``home`` again as a new version and promote it; returns the new version."""
    from orchestration.registry.bundle import COMPILED_DIR
    from orchestration.registry.promotion import BUNDLE_MODEL, current_champion, promote
    from orchestration.registry.tracking import MLflowTracking
    from orchestration.store.paths import RecsysPaths

    client = MLflowTracking(home=str(home)).client()
    champion = current_champion(client)
    # A newly trained bundle's models have not been compiled on this machine: forget the kept machine code, so the
    # swap compiles them as it would (the served models are already loaded).
    shutil.rmtree(RecsysPaths(Path(home)).cache_dir / COMPILED_DIR, ignore_errors=True)
    source = client.get_model_version(BUNDLE_MODEL, str(champion["version"]))
    copy = client.create_model_version(BUNDLE_MODEL, source.source, run_id=source.run_id)
    promote(client, int(copy.version), champion.get("metrics") or {}, champion.get("data_version") or "",
            reasons=["benchmarks.serving: the same bundle registered again, to swap models under load"])
    return int(copy.version)


if __name__ == "__main__":  # python -m benchmarks.serving_server promote-copy HOME: prints the new version
    if len(sys.argv) != 3 or sys.argv[1] != "promote-copy":
        sys.exit("usage: python -m benchmarks.serving_server promote-copy HOME")
    print(promote_copy_of_champion(Path(sys.argv[2])))
