"""How runs and their steps share the warehouse: one at a time on the single-file one, several on a shared one.

The single DuckDB file accepts one writer, so each run executes its steps one after another in one process and
the instance runs one run at a time. A shared warehouse (DuckLake, its catalog on a database server) takes
writers from many processes: steps run in processes of their own, several runs at once, and each asset that
writes shared state has a concurrency pool named after it, limited to one step at a time by the instance
(``orchestration.apps.instance``), so two runs pipeline through the graph without writing one table at once.
The settings are read when a function here is called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from orchestration.store.lake import lake_setting

if TYPE_CHECKING:
    import dagster as dg

MAX_CONCURRENT_RUNS_VARIABLE = "RECSYS_MAX_CONCURRENT_RUNS"
DEFAULT_MAX_CONCURRENT_RUNS = 4  # runs in progress at once on a shared warehouse; the queue holds the rest
# Step processes of one run at once on a shared warehouse; unset: the machine's CPU count (Dagster's default).
MAX_CONCURRENT_STEPS_VARIABLE = "RECSYS_MAX_CONCURRENT_STEPS"
WRITER_POOL_LIMIT = 1  # steps of one pool at once, across every run of the instance


class ConcurrencySettingError(ValueError):
    """A concurrency setting that is not a whole number of at least 1: one line, no traceback."""


def shared_warehouse() -> bool:
    """Whether ``RECSYS_WAREHOUSE`` names a warehouse that several processes may write at once (a DuckLake)."""
    return lake_setting() is not None


def _count_setting(variable: str) -> int | None:
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConcurrencySettingError(f"{variable}={value!r} is not valid; expected a whole number of at least 1")
    return int(value)


def max_concurrent_runs() -> int:
    """Runs in progress at once: 1 on the single-file warehouse, else ``$RECSYS_MAX_CONCURRENT_RUNS``."""
    if not shared_warehouse():
        return 1
    return _count_setting(MAX_CONCURRENT_RUNS_VARIABLE) or DEFAULT_MAX_CONCURRENT_RUNS


def run_executor() -> dg.ExecutorDefinition:
    """The executor of every job: in-process on the single-file warehouse, else one process per step, at most
    ``$RECSYS_MAX_CONCURRENT_STEPS`` at once."""
    import dagster as dg  # here, not above: the command line reads these settings without loading Dagster

    if not shared_warehouse():
        return dg.in_process_executor
    return dg.multiprocess_executor.configured({"max_concurrent": _count_setting(MAX_CONCURRENT_STEPS_VARIABLE)})
