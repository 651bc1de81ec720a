"""The whole asset graph on synthetic shops of 1M, 3M, 10M events: wall time, CPU time and peak memory per stage.

    python -m benchmarks.scale --events 1M 3M            # embedded: in-process executor, one DuckDB file
    python -m benchmarks.scale --events 0.2M --keep      # a quick look; --keep leaves the state folders behind
    python -m benchmarks.scale --events 1M --mode parallel --postgres postgresql://USER@HOST:PORT/DB

Each size runs in a fresh process and a fresh RECSYS_HOME: generate the shop, then materialize ``all_assets_job``
(every asset and check `make demo` materializes: ingest, dbt and its tests, the Great Expectations checks,
item embeddings, sequences and SASRec, the baselines, candidates, features and the LambdaMART re-ranker,
evaluation, the bundle and promotion, batch recommendations). A thread samples the resident memory and CPU time
of the process and its children (dbt, the data-parallel trainers) every ``SAMPLE_S``; the run's event log gives
each step's start and end, and every sample goes to the step that was running.

The shop grows the way a shop grows: more customers, each behaving as before. Only ``n_users`` changes with the
size (``EVENTS_PER_CUSTOMER`` order lines and browsing events each, measured on the default behaviour); the
catalogue (``ITEMS``) and the history (``DAYS``) stay fixed, so the item side of every model (BERT texts, item
tables, the item-to-item matrix, item-kNN) costs the same at every size and what grows is per customer. A cost per
million events that rises with size then points at work that is not linear in customers.

The model settings are fixed rather than sized to the data (``RUN_CONFIG``): the data-sized defaults
(``recmodels.sizing``) widen SASRec and change its epochs and the ranker's trees as the shop grows, and the split
rule picks shorter windows for larger shops; all of that would change the work done per event.

``--mode parallel`` runs the same job the way a shared deployment does: a DuckLake warehouse whose catalog is a
fresh database on the given PostgreSQL (its files in the size's folder), the Dagster instance and MLflow in
PostgreSQL too, and the multiprocess executor (``RECSYS_MAX_CONCURRENT_STEPS``, default the CPU count). Steps then
overlap, so a step's CPU and memory are those of its own process and its children (found by the pid its start
event records), and a stage's wall time is the time any of its steps was running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import REPO_ROOT, emit_json, machine

# Order lines + browsing events per customer of the default synthetic behaviour (5,000 customers, 1,000 items:
# 203,825 order lines and 656,102 interactions).
EVENTS_PER_CUSTOMER = 172
ITEMS = 2_000
DAYS = 365
SAMPLE_S = 0.1
# Fixed settings, chosen so the work per customer is the same at every size (module docstring). SASRec runs every
# epoch (patience = epochs); its refit runs as many as validation picked, which the figures record.
RUN_CONFIG = {
    "ops": {
        "user_sequences": {"config": {"test_days": 30, "validation_days": 30}},
        "sasrec_model": {"config": {"epochs": 3, "patience": 3, "hidden_size": 64, "batch_size": 128, "lr": 3e-3,
                                    "warmup_steps": 100, "num_threads": 2, "item_to_item": True}},
        "ranker_model": {"config": {"num_leaves": 31, "min_data_in_leaf": 50}},
    }
}
# Step (an asset's op or a check's op) -> the stage it counts towards.
STAGES = {
    "raw_tables": "ingest",
    "recsys_dbt_models": "dbt + checks",
    "clean_data_version": "dbt + checks",
    "dim_items_great_expectations": "dbt + checks",
    "dim_items_great_expectations_warnings": "dbt + checks",
    "dim_users_great_expectations": "dbt + checks",
    "fct_interactions_great_expectations": "dbt + checks",
    "reconciliation_great_expectations": "dbt + checks",
    "item_embeddings": "embeddings",
    "item_embeddings_great_expectations": "embeddings",
    "user_sequences": "sequences + SASRec",
    "sasrec_model": "sequences + SASRec",
    "baseline_models": "baselines",
    "candidate_scores": "ranking",
    "ranker_features": "ranking",
    "ranker_features_great_expectations": "ranking",
    "ranker_model": "ranking",
    "evaluation_metrics": "evaluation + promotion",
    "recommender_bundle": "evaluation + promotion",
    "promotion_decision": "evaluation + promotion",
    "user_recommendations": "batch recommendations",
}
STAGE_ORDER = ("ingest", "dbt + checks", "embeddings", "sequences + SASRec", "baselines", "ranking",
               "evaluation + promotion", "batch recommendations", "other")


def parse_events(text: str) -> int:
    """'1M' -> 1,000,000; '250k' -> 250,000; plain numbers as they are."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return round(float(text[:-1] if scale > 1 else text) * scale)


@dataclass
class Sampler:
    """Resident memory and CPU seconds of this process and its children, sampled in a background thread.

    CPU is this process's plus its reaped children's (``cpu_times``' children fields) plus its live children's,
    so a dbt subprocess counts while it runs and after it ends. ``limit_bytes``: above it the run stops, since
    the figures are meant to stay under it and the machine is shared."""

    limit_bytes: int
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (unix time, bytes, CPU seconds)
    # pid -> (peak bytes, latest CPU seconds) of that process with its descendants: a parallel step's own figures.
    trees: dict[int, tuple[int, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        time.sleep(2 * SAMPLE_S)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            processes = {me.pid: _figures(me, me.ppid())}
            for child in me.children(recursive=True):
                try:
                    processes[child.pid] = _figures(child, child.ppid())
                except psutil.Error:  # the child ended between listing and reading
                    pass
            rss = sum(figures[1] for figures in processes.values())
            cpu = sum(figures[2] for figures in processes.values())
            self.samples.append((time.time(), rss, cpu))
            self._record_trees(processes)
            if rss > self.limit_bytes:
                print(f"Stopped: {rss / 2**30:.1f} GiB resident, over the {self.limit_bytes / 2**30:.1f} GiB limit.",
                      file=sys.stderr, flush=True)
                for child in me.children(recursive=True):
                    child.kill()
                os._exit(3)
            time.sleep(SAMPLE_S)

    def _record_trees(self, processes: dict[int, tuple[int, int, float]]) -> None:
        totals = {pid: [rss, cpu] for pid, (_, rss, cpu) in processes.items()}
        for pid, (parent, rss, cpu) in processes.items():
            while parent in processes:  # every ancestor's tree holds this process too
                totals[parent][0] += rss
                totals[parent][1] += cpu
                parent = processes[parent][0]
        for pid, (rss, cpu) in totals.items():
            peak = max(rss, self.trees.get(pid, (0, 0.0))[0])
            self.trees[pid] = (peak, cpu)

    def tree(self, pid: int) -> dict | None:
        """CPU seconds and peak MiB of process ``pid`` with its descendants, None if it was never sampled."""
        if pid not in self.trees:
            return None
        peak, cpu = self.trees[pid]
        return {"cpu_s": cpu, "peak_mib": peak / 2**20}

    def window(self, start: float, end: float) -> dict:
        """Wall seconds, CPU seconds and peak MiB between two unix times (the nearest samples bound CPU)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        before = max((s for s in self.samples if s[0] <= start), default=self.samples[0], key=lambda s: s[0])
        after = min((s for s in self.samples if s[0] >= end), default=self.samples[-1], key=lambda s: s[0])
        peak = max((s[1] for s in inside + [before, after]), default=0)
        return {"wall_s": end - start, "cpu_s": max(0.0, after[2] - before[2]), "peak_mib": peak / 2**20}


def _figures(process, parent: int) -> tuple[int, int, float]:
    """(parent pid, resident bytes, CPU seconds) of one process; CPU includes its children that have ended."""
    times = process.cpu_times()
    return parent, process.memory_info().rss, times.user + times.system + times.children_user + times.children_system


def step_windows(instance, run_id: str) -> list[tuple[str, float, float, int | None]]:
    """(step key, start, end, pid of the process it ran in) of every step of the run, from the event log."""
    starts, windows = {}, []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = (record.timestamp, event.pid)
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            start, pid = starts[event.step_key]
            windows.append((event.step_key, start, record.timestamp, pid))
    return sorted(windows, key=lambda window: window[1])


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Seconds during which at least one of ``intervals`` was open (overlaps counted once)."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            covered += end - max(start, reach)
            reach = end
    return covered


def parallel_environment(server_url: str, home: Path, events: int) -> dict[str, str]:
    """The settings of a shared deployment for one size: a fresh catalog and stores database on ``server_url``'s
    PostgreSQL, named after the size and the folder, and the lake's files in the size's folder."""
    from orchestration.store.postgres import ensure_database, parse_postgres_url

    server = parse_postgres_url(server_url, "--postgres")
    database = f"scale_{events}_{home.name.rsplit('-', 1)[-1]}".lower()
    ensure_database(server, database)
    stores = server.with_database(database).url
    return {"RECSYS_WAREHOUSE": f"ducklake+{stores.split('?', 1)[0]}?data_path={home / 'lake'}",
            "RECSYS_POSTGRES_URL": stores}


def run_one(events: int, home: Path, limit_gib: float, postgres: str | None = None) -> dict:
    """Generate the shop and materialize every asset in ``home``; the figures of each step and stage. With
    ``postgres`` (a server URL), the parallel mode: DuckLake, stores in PostgreSQL, a process per step."""
    os.environ["RECSYS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if postgres:
        os.environ.update(parallel_environment(postgres, home, events))
    import dagster as dg

    from orchestration.apps.runner import materialize
    from orchestration.ingest.sources import materialize_synthetic_shop, synthetic_config
    from orchestration.store.paths import recsys_paths
    from orchestration.store.warehouse import Warehouse

    users = max(1, round(events / EVENTS_PER_CUSTOMER))
    started = time.perf_counter()
    shop = materialize_synthetic_shop(recsys_paths(home).ensure().sources_dir,
                                      synthetic_config({"n_users": users, "n_items": ITEMS, "n_days": DAYS}))
    figures = {"target_events": events, "users": users, "items": ITEMS, "days": DAYS,
               "order_lines": shop.stats["n_order_lines"], "interactions": shop.stats["n_interactions"],
               "generate_s": round(time.perf_counter() - started, 1), "home": str(home)}
    figures["events"] = figures["order_lines"] + figures["interactions"]

    sampler = Sampler(limit_bytes=int(limit_gib * 2**30))
    # The source through run config rather than a resource object, so that step processes of the parallel mode,
    # which load the definitions from their module, see it too.
    source = {"source": "synthetic", "synthetic_users": users, "synthetic_items": ITEMS, "synthetic_days": DAYS}
    run_config = {**RUN_CONFIG, "resources": {"data_source": {"config": source}}}
    if postgres:
        with Warehouse(str(home)).connect() as con:  # create the catalog before any step process attaches it
            con.execute("select 1")
    # Embedded: an in-memory instance, as before; parallel: the instance in PostgreSQL, which step processes need.
    instance = None if postgres else dg.DagsterInstance.ephemeral()
    sampler.start()
    started_at = time.time()
    result = materialize(instance=instance, log_level="WARNING", stdout_log=home / "logs" / "run.log",
                         run_config=run_config)
    ended_at = time.time()
    sampler.stop()
    instance = instance or dg.DagsterInstance.get()

    steps, intervals = {}, {}
    for key, start, end, pid in step_windows(instance, result.run_id):
        own = sampler.tree(pid) if postgres and pid is not None and pid != os.getpid() else None
        window = sampler.window(start, end)
        steps[key] = {"stage": STAGES.get(key, "other"), **window, **(own or {})}
        intervals.setdefault(steps[key]["stage"], []).append((start, end))
    stages: dict[str, dict] = {}
    for step in steps.values():
        stage = stages.setdefault(step["stage"], {"wall_s": 0.0, "cpu_s": 0.0, "peak_mib": 0.0})
        stage["cpu_s"] += step["cpu_s"]
        stage["peak_mib"] = max(stage["peak_mib"], step["peak_mib"])
    for name, stage in stages.items():
        stage["wall_s"] = covered_seconds(intervals[name])
    total = sampler.window(started_at, ended_at)
    sasrec = result.asset_materializations_for_node("sasrec_model")[0].metadata
    figures.update(mode="parallel" if postgres else "embedded", steps=steps, stages=stages, total=total,
                   success=result.success,
                   sasrec_epochs={name: sasrec[name].value for name in sasrec if "epoch" in name})
    return figures


def per_million(figures: dict) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds per million events of each stage and of the whole run."""
    millions = figures["events"] / 1e6
    costs = {name: {"wall_s": stage["wall_s"] / millions, "cpu_s": stage["cpu_s"] / millions}
             for name, stage in figures["stages"].items()}
    costs["whole run"] = {"wall_s": figures["total"]["wall_s"] / millions, "cpu_s": figures["total"]["cpu_s"] / millions}
    return costs


def _ordered(names) -> list[str]:
    return sorted(names, key=lambda name: STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER))


def print_size(figures: dict) -> None:
    title = (f"{figures['events'] / 1e6:.2f}M events, {figures.get('mode', 'embedded')} ({figures['users']:,} customers, {figures['items']:,} items, "
             f"{figures['days']} days; generated in {figures['generate_s']} s)")
    print(f"\n{title}\n{'-' * len(title)}")
    print(f"{'stage / step':<44} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9}")
    for stage in _ordered(figures["stages"]):
        row = figures["stages"][stage]
        print(f"{stage:<44} {row['wall_s']:>8.1f} {row['cpu_s']:>8.1f} {row['peak_mib']:>9,.0f}")
        for key, step in figures["steps"].items():
            if step["stage"] == stage and step["wall_s"] >= 1:
                print(f"  {key:<42} {step['wall_s']:>8.1f} {step['cpu_s']:>8.1f} {step['peak_mib']:>9,.0f}")
    total = figures["total"]
    print(f"{'whole run (steps and between them)':<44} {total['wall_s']:>8.1f} {total['cpu_s']:>8.1f} "
          f"{total['peak_mib']:>9,.0f}")


def print_costs(runs: list[dict]) -> None:
    """Seconds per million events of each stage at each size, and the ratio of the largest to the smallest."""
    costs = [per_million(figures) for figures in runs]
    sizes = [f"{figures['events'] / 1e6:.2f}M" for figures in runs]
    title = "Cost per million events (wall s / CPU s)"
    print(f"\n{title}\n{'-' * len(title)}")
    print(f"{'stage':<26}" + "".join(f"{size:>16}" for size in sizes) + f"{'ratio wall/CPU':>18}")
    for stage in [*_ordered(runs[0]["stages"]), "whole run"]:
        cells = [cost.get(stage, {"wall_s": 0.0, "cpu_s": 0.0}) for cost in costs]
        line = "".join(f"{cell['wall_s']:>8.1f}/{cell['cpu_s']:<7.1f}" for cell in cells)
        first, last = cells[0], cells[-1]
        ratio = (f"{last['wall_s'] / first['wall_s']:.2f}/{last['cpu_s'] / first['cpu_s']:.2f}"
                 if first["wall_s"] and first["cpu_s"] else "-")
        print(f"{stage:<26}{line}{ratio:>18}")


def run_in_child(events: int, home: Path, limit_gib: float, postgres: str | None) -> dict:
    """``run_one`` in a fresh interpreter, so each size's peak memory is its own."""
    command = [sys.executable, "-m", "benchmarks.scale", "--one", str(events), "--home", str(home),
               "--limit-gib", str(limit_gib), *(["--postgres", postgres] if postgres else [])]
    completed = subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"The {events:,}-event run failed (exit {completed.returncode}); its state is in {home}.")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def combined(outputs: list[str]) -> list[dict]:
    """The runs recorded in the JSON lines that ends each output (sizes run apart, e.g. side by side), by size."""
    runs = []
    for output in outputs:
        figures = json.loads(Path(output).read_text().strip().splitlines()[-1])
        runs.extend(figures.get("runs", [figures]))
    return sorted(runs, key=lambda figures: figures["events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", nargs="+", default=["1M", "3M"], help="shop sizes in events: 1M 3M 10M")
    parser.add_argument("--mode", choices=("embedded", "parallel"), default="embedded",
                        help="embedded: the in-process executor on one DuckDB file (the default); parallel: DuckLake, "
                             "the stores in PostgreSQL and a process per step (needs --postgres)")
    parser.add_argument("--postgres", metavar="URL",
                        help="parallel mode: a PostgreSQL server (postgresql://USER@HOST:PORT/DB) whose user may "
                             "create databases; each size gets a fresh one")
    parser.add_argument("--limit-gib", type=float, default=15.0, help="stop a run whose memory passes this")
    parser.add_argument("--keep", action="store_true", help="keep each size's state folder")
    parser.add_argument("--combine", nargs="+", metavar="OUTPUT",
                        help="print the tables of earlier runs (files holding their output) instead of running")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child's single size, in events
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "parallel" and not args.postgres and not args.combine:
        parser.error("--mode parallel needs --postgres URL (a server whose user may create databases)")
    if args.one is not None:
        figures = run_one(args.one, Path(args.home), args.limit_gib, args.postgres)
        print_size(figures)
        emit_json(figures)
        return

    runs = combined(args.combine) if args.combine else []
    for size in [] if args.combine else args.events:
        home = Path(tempfile.mkdtemp(prefix=f"recsys-scale-{size}-"))
        print(f"{size}: running the whole graph in {home} ...", flush=True)
        runs.append(run_in_child(parse_events(size), home, args.limit_gib,
                                 args.postgres if args.mode == "parallel" else None))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(home)], check=False)
    for figures in runs:
        print_size(figures)
    print_costs(runs)
    emit_json({"mode": args.mode, "run_config": RUN_CONFIG, **machine(),
               "runs": [{key: value for key, value in figures.items() if key != "home"} for figures in runs]})


if __name__ == "__main__":
    main()
