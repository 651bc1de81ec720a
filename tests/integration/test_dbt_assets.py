"""The dbt models as Dagster assets: what their materializations and specs carry into the UI, a NUL-dirty
export accounted for row by row, and a model built with its upstream on a fresh home."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from orchestration.apps.runner import materialize
from orchestration.defs.resources import DataSourceResource, WarehouseResource
from orchestration.defs.transforms import recsys_dbt_models
from tests.unit.orchestration.test_ingest_nul_bytes import HEADER, N_LINES, NUL_ROWS, export_lines

MARTS = ("fct_interactions", "dim_items", "dim_users", "quarantine", "reconciliation")


@pytest.fixture(scope="module")
def nul_export_run(tmp_path_factory):
    """(home, run result): ingest and every dbt model over a 20,000-line export, 21 lines of it with NULs."""
    tmp = tmp_path_factory.mktemp("nul-export")
    folder = tmp / "export"
    folder.mkdir()
    (folder / "interactions.csv").write_text("\n".join([HEADER, *export_lines()]) + "\n")
    home = tmp / "home"
    selection = dg.AssetSelection.groups("ingest") | dg.AssetSelection.assets(recsys_dbt_models)
    result = materialize(
        selection,
        resources={"warehouse": WarehouseResource(home=str(home)),
                   "data_source": DataSourceResource(source="generic", data=str(folder))},
        instance=dg.DagsterInstance.ephemeral(), log_level="WARNING", stdout_log=home / "dbt.log",
    )
    assert result.success
    return home, result


def _metadata(result, asset: str) -> dict:
    materializations = result.asset_materializations_for_node("recsys_dbt_models")
    (materialization,) = [m for m in materializations if m.asset_key == dg.AssetKey(asset)]
    return materialization.metadata


def _records(value) -> list[dict]:
    return [dict(record.data) for record in value.records]


def test_every_nul_line_is_quarantined_and_the_books_balance(nul_export_run):
    home, result = nul_export_run
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_interactions").fetchone() == (N_LINES - 21,)
        assert con.execute(
            "select source_row, reason from marts.quarantine order by source_row"
        ).fetchall() == [(row, "malformed_line") for row in NUL_ROWS]
        assert con.execute(
            "select raw_rows, declared_rows, kept_rows, duplicate_rows, rejected_rows, rejected_by_reason, "
            "is_balanced from marts.reconciliation"
        ).fetchall() == [(20_000, 20_000, 19_979, 0, 21, '{"malformed_line":21}', True)]


def test_quarantine_and_reconciliation_show_their_rows_by_reason(nul_export_run):
    _, result = nul_export_run
    assert _records(_metadata(result, "quarantine")["rows_by_reason"]) == [
        {"source_table": "interactions", "reason": "malformed_line", "rows": 21}
    ]
    reconciliation = _metadata(result, "reconciliation")
    assert _records(reconciliation["rows_by_reason"]) == [
        {"target_table": "interactions", "status": "kept", "reason": None, "rows": 19_979},
        {"target_table": "interactions", "status": "duplicate", "reason": None, "rows": 0},
        {"target_table": "interactions", "status": "rejected", "reason": "malformed_line", "rows": 21},
    ]
    assert reconciliation["loads"].value == 1
    assert reconciliation["all_loads_balanced"].value is True


def test_every_mart_has_its_typed_column_schema_and_its_yaml_description(nul_export_run):
    _, result = nul_export_run
    specs = recsys_dbt_models.specs_by_key
    for mart in MARTS:
        schema = _metadata(result, mart)["dagster/column_schema"].schema
        declared = specs[dg.AssetKey(mart)].metadata["dagster/column_schema"]
        # Every built column is declared and described in the YAML, and carries its warehouse type.
        assert [c.name for c in schema.columns] == [c.name for c in declared.columns], mart
        assert all(c.description and c.type not in ("?", "") for c in schema.columns), mart
        assert "Raw SQL" not in specs[dg.AssetKey(mart)].description
    fct_schema = _metadata(result, "fct_interactions")["dagster/column_schema"].schema
    fct = {c.name: c.type for c in fct_schema.columns}
    assert (fct["occurred_at"], fct["quantity"], fct["unit_price"], fct["user_id"]) == (
        "TIMESTAMP", "INTEGER", "DOUBLE", "VARCHAR")
    assert specs[dg.AssetKey("dim_users")].description == (
        "One row per pseudonymised user with at least one clean event: a customer, or an anonymous visitor's session.")
    assert fct["is_anonymous"] == "BOOLEAN"
    assert _metadata(result, "reconciliation")["dagster/row_count"].value == 1


def test_a_mart_builds_with_its_upstream_on_a_fresh_home(tmp_path):
    # Its relationship tests read dim_users and dim_items, which this run neither builds nor finds.
    home = tmp_path / "home"
    resources = {"warehouse": WarehouseResource(home=str(home)),
                 "data_source": DataSourceResource(source="synthetic", synthetic_users=40, synthetic_items=20,
                                                   synthetic_days=20, synthetic_seed=3)}
    result = materialize("*fct_interactions", resources=resources, instance=dg.DagsterInstance.ephemeral(),
                         log_level="WARNING", stdout_log=home / "dbt.log")
    assert result.success
    built = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert "fct_interactions" in built and "dim_users" not in built and "quarantine" not in built
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()
              if c.asset_key == dg.AssetKey("fct_interactions")}
    assert checks["unique_fct_interactions_interaction_id"] is True
    assert not any(name.startswith("relationships_fct_interactions") for name in checks)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) > 0 from marts.fct_interactions").fetchone() == (True,)
