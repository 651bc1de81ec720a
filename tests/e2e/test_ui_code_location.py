"""`make ui` runs `dagster dev` without an activated venv: the code location must load with dbt off PATH."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "transforms" / "target" / "manifest.json"
SNAPSHOT = ROOT / "tests" / "snapshots" / "asset_graph.json"


def test_definitions_load_under_dagster_dev_with_dbt_off_path(tmp_path):
    before = MANIFEST.stat().st_mtime_ns
    # What `dagster dev` sets for its code server; PATH as in a shell that never activated .venv.
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": "/usr/bin:/bin", "DAGSTER_IS_DEV_CLI": "1",
           "RECSYS_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    code = ("import orchestration.definitions as d; "
            "print(len(list(d.defs.resolve_asset_graph().get_all_asset_keys())))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == len(json.loads(SNAPSHOT.read_text())["assets"])
    assert MANIFEST.stat().st_mtime_ns > before  # the dev-time `dbt parse` ran, with the venv's dbt
