"""The shared warehouse on real servers: DuckLake with its catalog in a loopback PostgreSQL.

Two processes materialize the whole graph at the same moment on one lake, one Dagster instance
and one MLflow store in PostgreSQL, as two machines of a deployment would; both must succeed and leave the tables
one run leaves: every raw row loaded once, the reconciliation balanced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.store.warehouse import Warehouse
from tests.e2e.test_cli import _tiny_generic_shop

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_IN_PROCESS = """
from orchestration.apps.runner import materialize
from orchestration.defs.resources import WarehouseResource
materialize(resources={"warehouse": WarehouseResource()}, log_level="WARNING")
"""


@pytest.fixture
def lake_url(postgres_server, tmp_path, request) -> str:
    database = f"lake_{request.node.name[:40].lower().replace('[', '_').replace(']', '')}"
    postgres_server.create_database(database)
    return (f"ducklake+postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/"
            f"{database}?data_path={tmp_path / 'lake-files'}")


def _lake_environment(home: Path, lake_url: str, stores_url: str, data: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RECSYS_", "MLFLOW_"))}
    return {**env, "RECSYS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "RECSYS_WAREHOUSE": lake_url,
            "RECSYS_POSTGRES_URL": stores_url, "RECSYS_SOURCE": "generic", "RECSYS_DATA": str(data),
            "RECSYS_MAX_CONCURRENT_STEPS": "2"}


def test_two_runs_at_once_on_one_lake_both_succeed_and_reconcile(postgres_server, lake_url, tmp_path):
    data = _tiny_generic_shop(tmp_path / "shop")
    home = tmp_path / "home"
    stores = postgres_server.create_database("stores_two_runs")
    env = _lake_environment(home, lake_url, stores, data)
    # Create the catalog once: two processes creating a brand-new catalog at the same moment race.
    with Warehouse(str(home), lake_url).connect() as con:
        con.execute("select 1")
    # Each run executes its steps in its own process, one after another (a run given resources runs in-process):
    # the multiprocess executor's start-up per step would cost the suite minutes, and what this test proves is
    # two runs writing one lake at once, with the pools of one instance between them.
    command = [sys.executable, "-c", RUN_IN_PROCESS]
    runs = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-4000:]

    with Warehouse(str(home), lake_url).connect(read_only=True) as con:
        assert con.execute("select current_database()").fetchone() == ("warehouse",)
        # Each file loaded once although both runs ingested it; the interactions file has 33 lines.
        loads = con.execute("select target_table, count(*) from raw.loads group by all order by 1").fetchall()
        assert loads == [("interactions", 1), ("items", 1)]
        assert con.execute("select count(*) from raw.interactions").fetchone()[0] == 33
        assert con.execute("select count(*) from marts.fct_interactions").fetchone()[0] == 32
        assert con.execute("select reason from marts.quarantine").fetchall() == [("missing_user",)]
        balanced = con.execute("select bool_and(is_balanced) from marts.reconciliation").fetchone()[0]
        assert balanced is True
        assert con.execute("select count(distinct user_id) from ml.user_recommendations").fetchone()[0] == 8
    assert not (home / "warehouse.duckdb").exists()  # nothing went to the embedded file
