"""Prepare the Dagster instance folder under RECSYS_HOME.

DuckDB allows one writer, so the instance runs one run at a time (the run queue) and every run
executes its steps in one process (the in-process executor set in ``definitions.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestration.store.paths import recsys_paths

INSTANCE_YAML = """\
# Written by orchestration.apps.instance; edit freely, it is only created when missing.
run_queue:
  # One run at a time: the DuckDB warehouse accepts a single writer.
  max_concurrent_runs: 1
telemetry:
  enabled: false
"""


def ensure_dagster_home(home: str | os.PathLike | None = None) -> Path:
    """Create ``$RECSYS_HOME/dagster/dagster.yaml`` if missing and return the folder (also exported as DAGSTER_HOME)."""
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or recsys_paths(home).dagster_home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


if __name__ == "__main__":
    print(f"Dagster instance: {ensure_dagster_home()}")
