"""Prepare the Dagster instance folder under RECSYS_HOME.

DuckDB allows one writer, so the instance runs one run at a time (the run queue) and every run
executes its steps in one process (the in-process executor set in ``definitions.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from orchestration.store.paths import recsys_paths

# Top-level key -> its block of dagster.yaml.
INSTANCE_SETTINGS = {
    "run_queue": """\
run_queue:
  # One run at a time: the DuckDB warehouse accepts a single writer.
  max_concurrent_runs: 1
""",
    "telemetry": """\
telemetry:
  enabled: false
""",
    "nux": """\
nux:
  # No "Join the Dagster community" dialog over the UI's first page.
  enabled: false
""",
}
INSTANCE_YAML = (
    "# Written by orchestration.apps.instance; edit freely: what you set is kept, what is missing is added.\n"
    + "".join(INSTANCE_SETTINGS.values())
)


def ensure_dagster_home(home: str | os.PathLike | None = None) -> Path:
    """Create ``$RECSYS_HOME/dagster/dagster.yaml`` (or add the settings it lacks) and return the folder,
    also exported as DAGSTER_HOME."""
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or recsys_paths(home).dagster_home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    else:
        # Homes made before a setting existed here get it too, so an older home also opens without the dialog.
        text = config.read_text()
        missing = [
            block for key, block in INSTANCE_SETTINGS.items() if not re.search(rf"^{key}\s*:", text, re.M)
        ]
        if missing:
            config.write_text(text + ("" if text.endswith("\n") or not text else "\n") + "".join(missing))
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


if __name__ == "__main__":
    print(f"Dagster instance: {ensure_dagster_home()}")
