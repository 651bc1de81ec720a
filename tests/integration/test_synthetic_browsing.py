"""The synthetic shop's browsing layer through ingest and dbt: every raw row is accounted for, anonymous sessions
become their own users, and the purchases the models split hold customers only."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import duckdb
import pytest

from orchestration.ingest.sources import ingest_configured_source
from orchestration.store.marts import read_interactions

TRANSFORMS_DIR = Path(__file__).resolve().parents[2] / "transforms"
SMALL_SHOP = {"n_users": 150, "n_items": 60, "n_days": 90, "seed": 3}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    tmp = tmp_path_factory.mktemp("browsing")
    path = tmp / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        loads = ingest_configured_source(con, "synthetic", None, tmp / "sources", SMALL_SHOP)
    stats = json.loads(next((tmp / "sources").glob("synthetic-*/stats.json")).read_text())
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("RECSYS_WAREHOUSE", str(path))
    try:
        result = dbtRunner().invoke(["build", "--project-dir", str(TRANSFORMS_DIR), "--profiles-dir",
                                     str(TRANSFORMS_DIR), "--target-path", str(tmp / "target"), "--log-path",
                                     str(tmp / "logs"), "--quiet"])
    finally:
        monkeypatch.undo()
    failures = [f"{r.node.name}: {r.status} {r.message}" for r in (result.result.results if result.result else [])
                if str(r.status) not in ("success", "pass")]
    assert result.success and not failures, result.exception or "\n".join(failures)
    del result  # it holds the adapter, whose connection must go before the file is opened again
    DuckDBConnectionManager.close_all_connections()
    gc.collect()
    # Read-write, the configuration dbt-duckdb opened the file with: should its connection outlive the calls above
    # in this process (it did under pytest-xdist), a read-only one would be refused as a different configuration.
    con = duckdb.connect(str(path))
    yield con, loads, stats
    con.close()


def test_the_browsing_events_are_loaded_and_reconcile(built):
    con, loads, stats = built
    assert [load.target_table for load in loads] == ["order_lines", "items", "interactions"]
    rows = con.execute(
        "select target_table, raw_rows, kept_rows, duplicate_rows, rejected_rows, collapsed_rows, is_balanced "
        "from marts.reconciliation order by load_seq").fetchall()
    assert all(row[-1] for row in rows), rows
    interactions = next(row for row in rows if row[0] == "interactions")
    assert interactions[1] == stats["n_interactions"]
    assert interactions[4] == 0  # the browsing layer is clean: nothing quarantined
    fct = con.execute("select count(*) from marts.fct_interactions where source_table = 'interactions'").fetchone()
    assert fct[0] == interactions[2] - interactions[5]  # kept minus the views merged into an earlier one
    kinds = dict(con.execute("select event_type, count(*) from marts.fct_interactions group by 1").fetchall())
    assert set(kinds) == {"view", "cart", "purchase"} and kinds["view"] > 2 * kinds["purchase"]


def test_anonymous_sessions_are_users_but_not_customers(built):
    con, _, stats = built
    sessions = con.execute("select count(*) from marts.dim_users where is_anonymous").fetchone()[0]
    assert sessions == stats["anonymous_sessions"]
    assert con.execute("select count(*) from marts.dim_users where is_anonymous and user_id not like 's\\_%' "
                       "escape '\\'").fetchone()[0] == 0
    purchases = read_interactions(con, purchases_of_known_customers=True)
    anonymous = {u for (u,) in con.execute("select user_id from marts.dim_users where is_anonymous").fetchall()}
    assert len(purchases) and not purchases["user_id"].isin(anonymous).any()
    # Every anonymous raw row is kept (or a duplicate), and every kept one not merged into an earlier view is read.
    statuses = dict(con.execute("select row_status, count(*) from intermediate.int_interactions__classified "
                                "where user_id is null group by 1").fetchall())
    assert sum(statuses.values()) == stats["anonymous_events"] and "rejected" not in statuses
    standing = con.execute("select count(*) from intermediate.int_interactions__views_collapsed "
                           "where not is_collapsed and user_id is null").fetchone()[0]
    assert read_interactions(con)["user_id"].isin(anonymous).sum() == standing > 0
