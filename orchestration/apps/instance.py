"""Prepare the Dagster instance folder under RECSYS_HOME.

By default the instance keeps runs and event logs in SQLite files there and runs one run at a time (the run
queue), as the DuckDB file accepts one writer (``orchestration.defs.parallel`` picks the in-process executor).
``RECSYS_POSTGRES_URL`` moves runs, event logs and schedules to PostgreSQL; a shared warehouse lets several runs
go at once, with one step at a time per writer's pool.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from orchestration.defs.parallel import (
    WRITER_POOL_LIMIT,
    ConcurrencySettingError,
    max_concurrent_runs,
    shared_warehouse,
)
from orchestration.store.paths import recsys_paths
from orchestration.store.postgres import POSTGRES_URL_VARIABLE, PostgresSettingError, postgres_url

RUN_QUEUE = """\
run_queue:
  # One run at a time: the DuckDB warehouse accepts a single writer.
  max_concurrent_runs: 1
"""


def storage_block(url: str) -> str:
    """Runs, event logs and schedules on the PostgreSQL of ``url`` (a SQLAlchemy URL). A password in the URL
    lands in this file; PGPASSWORD or ~/.pgpass keep it out of both."""
    # JSON's quoting is YAML's too: a URL's ':', '#' or '&' stay part of the string.
    return f"""\
storage:
  # Runs, event logs and schedules on PostgreSQL, as {POSTGRES_URL_VARIABLE} is set.
  postgres:
    postgres_url: {json.dumps(url)}
"""


def concurrency_block(runs: int) -> str:
    """Several runs at once (Dagster refuses ``run_queue: max_concurrent_runs`` beside ``pools``, so the run
    limit moves here); each pool one step at a time, claimed per step ("op") so runs pipeline."""
    return f"""\
concurrency:
  # A shared warehouse (RECSYS_WAREHOUSE): RECSYS_MAX_CONCURRENT_RUNS runs, one step per writer's pool.
  runs:
    max_concurrent_runs: {runs}
  pools:
    default_limit: {WRITER_POOL_LIMIT}
    granularity: op
"""


TELEMETRY = """\
telemetry:
  enabled: false
"""
NUX = """\
nux:
  # No "Join the Dagster community" dialog over the UI's first page.
  enabled: false
"""
HEADER = "# Written by orchestration.apps.instance; edit freely: what you set is kept, what is missing is added.\n"
# Blocks whose value follows the settings: one still as written here is rewritten when they change, or removed
# when its setting is gone; one edited by hand is the user's and kept.
FOLLOWING = {"run_queue": RUN_QUEUE, "storage": storage_block(""), "concurrency": concurrency_block(0)}
INSTANCE_YAML = HEADER + RUN_QUEUE + TELEMETRY + NUX  # the embedded default


def instance_settings() -> dict[str, str]:
    """Top-level key -> its block of dagster.yaml under the current environment."""
    server = postgres_url()
    settings = {"storage": storage_block(server.sqlalchemy_url)} if server is not None else {}
    if shared_warehouse():
        settings["concurrency"] = concurrency_block(max_concurrent_runs())
    else:
        settings["run_queue"] = RUN_QUEUE
    return {**settings, "telemetry": TELEMETRY, "nux": NUX}


def _written_here(key: str, block: str) -> bool:
    def shape(text: str) -> str:  # the block without the values that follow a setting
        return re.sub(r"\d+", "0", re.sub(r"(postgres_url:) .*", r"\1", text.strip()))

    return key in FOLLOWING and shape(block) == shape(FOLLOWING[key])


def merged_instance_yaml(text: str, settings: dict[str, str]) -> str:
    """``text`` (a dagster.yaml) with the blocks of ``settings`` it lacks added and those it holds as written
    here brought up to date; every other block kept as it is."""
    head, *blocks = re.split(r"(?m)^(?=[A-Za-z_][\w-]*\s*:)", text)  # what precedes the first key, then one per key
    kept, present = [head if head.endswith("\n") or not head else head + "\n"], set()
    for block in blocks:
        key = re.match(r"[\w-]+", block)[0]
        present.add(key)
        if not _written_here(key, block):
            kept.append(block if block.endswith("\n") else block + "\n")
        elif key in settings:
            kept.append(settings[key])
    kept += [block for key, block in settings.items() if key not in present]
    return "".join(kept)


def ensure_dagster_home(home: str | os.PathLike | None = None) -> Path:
    """Create ``$RECSYS_HOME/dagster/dagster.yaml`` (or bring it up to the current settings) and return the
    folder, also exported as DAGSTER_HOME. ``PostgresSettingError`` or ``ConcurrencySettingError`` for a
    malformed setting."""
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or recsys_paths(home).dagster_home)
    settings = instance_settings()
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    text = config.read_text() if config.exists() else HEADER
    merged = merged_instance_yaml(text, settings)
    if merged != text:
        config.write_text(merged)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def ensure_pool_limits(instance, pools: Iterable[str], attempts: int = 5) -> list[str]:
    """Give each pool without a limit of its own the writers' limit, explicitly; returns the pools it set.

    Left to the instance's ``default_limit``, a pool's row is created by the first step that claims it, and two
    runs claiming a new pool at the same moment make Dagster 1.13's insert-then-update fail in PostgreSQL (the
    failed insert aborts the transaction the update runs in), which fails a run. Set here, before a run starts,
    the rows exist; a second process setting them at the same moment is retried."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    for attempt in range(attempts):
        try:
            known = set(storage.get_concurrency_keys())
            missing = sorted(set(pools) - known)
            for pool in missing:
                storage.set_concurrency_slots(pool, WRITER_POOL_LIMIT)
            return missing
        except Exception:
            if attempt + 1 == attempts:
                raise
            time.sleep(0.2 * (attempt + 1))
    return []


def _prepare() -> None:
    print(f"Dagster instance: {ensure_dagster_home()}")
    if shared_warehouse():  # runs the UI or a sensor launches claim the pools too: set their limits now
        import dagster as dg

        from orchestration.definitions import defs

        pools = {node.definition.pool for job in defs.resolve_all_job_defs() for node in job.graph.nodes}
        with dg.DagsterInstance.get() as instance:
            set_now = ensure_pool_limits(instance, pools - {None})
        print(f"Concurrency pools: {len(pools - {None})}, limits set now for {', '.join(set_now) or 'none'}")


if __name__ == "__main__":
    try:
        _prepare()
    except (PostgresSettingError, ConcurrencySettingError) as error:
        sys.exit(f"orchestration.apps.instance: {error}")
