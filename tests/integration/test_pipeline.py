"""Materialize ingest + transforms in-process and check the books, the checks and the blocking behaviour."""

from __future__ import annotations

import gzip
import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.apps.runner import materialize
from orchestration.defs.resources import DataSourceResource, WarehouseResource
from tests.conftest import ONLINE_RETAIL_CSV, require_shared_data

SMALL_SHOP = {"synthetic_users": 120, "synthetic_items": 60, "synthetic_days": 60, "synthetic_seed": 7}


# The models group needs months of history and trains models; test_model_assets.py covers it.
WITHOUT_MODELS = "not group:models and not group:ranking and not group:evaluation"


def _run(home, source: DataSourceResource, selection=WITHOUT_MODELS, raise_on_error=True):
    return materialize(
        selection,
        resources={"warehouse": WarehouseResource(home=str(home)), "data_source": source},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def _query(home, sql):
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).df()


def _check_results(result):
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": c.passed for c in result.get_asset_check_evaluations()}


def test_synthetic_shop_end_to_end(recsys_home):
    source = DataSourceResource(source="synthetic", **SMALL_SHOP)
    result = _run(recsys_home, source)
    checks = _check_results(result)
    assert checks["fct_interactions:great_expectations"]
    assert checks["reconciliation:great_expectations"]
    assert all(checks.values()), {k: v for k, v in checks.items() if not v}

    stats = json.loads(next((recsys_home / "sources").glob("synthetic-*/stats.json")).read_text())
    recon = _query(recsys_home, "select * from marts.reconciliation order by load_seq")
    assert recon["is_balanced"].all()
    lines = recon[recon.target_table == "order_lines"].iloc[0]
    assert lines.raw_rows == stats["n_order_lines"]
    assert lines.duplicate_rows == stats["duplicate_rows"]
    reasons = _query(recsys_home, "select reason, count(*) n from marts.quarantine group by reason").set_index("reason")["n"]
    assert reasons["cancellation"] == stats["matched_cancellations"]
    assert reasons["reversed_by_cancellation"] == stats["matched_cancellations"]
    assert reasons["missing_user"] == stats["missing_user_lines"]
    assert reasons["non_product"] == stats["non_product_lines"]
    assert reasons["malformed_line"] == stats["garbage_lines"]

    # Row counts reach the UI as materialization metadata.
    fct_rows = _query(recsys_home, "select count(*) n from marts.fct_interactions")["n"][0]
    fct_event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("fct_interactions"))
    # The order lines' and the browsing layer's kept rows, less the repeated views collapsed into one.
    events = recon[recon["target_table"].isin(["order_lines", "interactions"])]
    assert len(events) == 2 and events["collapsed_rows"].sum() > 0
    assert fct_event.materialization.metadata["dagster/row_count"].value == fct_rows == (
        events["kept_rows"].sum() - events["collapsed_rows"].sum())

    version = result.asset_materializations_for_node("clean_data_version")[0].metadata["version"].value
    loads = _query(recsys_home, "select count(*) n from raw.loads")["n"][0]
    # A second run finds the same files: nothing new is loaded and the clean data keeps its version.
    rerun = _run(recsys_home, source)
    assert _query(recsys_home, "select count(*) n from raw.loads")["n"][0] == loads
    assert rerun.asset_materializations_for_node("clean_data_version")[0].metadata["version"].value == version


def _write_generic(folder, interactions: list[dict], items: list[dict] | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(interactions).to_csv(folder / "interactions.csv", index=False)
    if items is not None:
        pd.DataFrame(items).to_csv(folder / "items.csv", index=False)
    return folder


def test_broken_input_fails_blocking_check_and_stops_downstream(recsys_home, tmp_path):
    # Every timestamp is unreadable: all rows are quarantined, so no clean event remains.
    data = _write_generic(
        tmp_path / "broken",
        [{"user_id": f"u{i}", "item_id": f"i{i % 3}", "timestamp": "yesterday-ish"} for i in range(12)],
    )
    result = _run(recsys_home, DataSourceResource(source="generic", data=str(data)), raise_on_error=False)
    checks = _check_results(result)
    assert checks["fct_interactions:great_expectations"] is False
    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "clean_data_version" not in materialized
    assert _query(recsys_home, "select count(*) n from marts.quarantine where reason = 'unparseable_timestamp'")["n"][0] == 12


@pytest.mark.realdata
def test_online_retail_slice(recsys_home, tmp_path):
    path = require_shared_data(ONLINE_RETAIL_CSV)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        head = [next(handle) for _ in range(20_001)]
    slice_path = tmp_path / "online_retail_20k.csv"
    slice_path.write_text("".join(head), encoding="utf-8")
    expected = pd.read_csv(slice_path, dtype=str, keep_default_na=False)

    result = _run(recsys_home, DataSourceResource(source="online_retail", data=str(slice_path)))
    assert all(_check_results(result).values())
    recon = _query(recsys_home, "select * from marts.reconciliation").iloc[0]
    assert recon.raw_rows == 20_000 and recon.is_balanced
    assert recon.duplicate_rows == int(expected.duplicated().sum())
    fct = _query(recsys_home, "select count(*) n, count(distinct interaction_id) d, min(quantity) q from marts.fct_interactions")
    assert fct.n[0] == fct.d[0] and fct.q[0] >= 1
    cancelled = _query(recsys_home, "select count(*) n from marts.fct_interactions where basket_id like 'C%'")
    assert cancelled.n[0] == 0


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("relative_path", "raw_rows", "duplicates"),
    [
        ("online_retail/online_retail.csv.gz", 541_909, 5_268),
        ("online_retail_ii_y2009_2010/online_retail_ii.parquet", 525_461, 6_865),
    ],
)
def test_full_online_retail_files_reconcile(recsys_home, relative_path, raw_rows, duplicates):
    path = require_shared_data(ONLINE_RETAIL_CSV.parents[1] / relative_path)
    result = _run(recsys_home, DataSourceResource(source="online_retail", data=str(path)))
    assert all(_check_results(result).values())
    recon = _query(recsys_home, "select * from marts.reconciliation").iloc[0]
    assert (recon.raw_rows, recon.duplicate_rows) == (raw_rows, duplicates)
    assert recon.raw_rows == recon.kept_rows + recon.duplicate_rows + recon.rejected_rows
    fct = _query(
        recsys_home,
        """select count(*) n, count(distinct interaction_id) ids, count(*) filter (where basket_id like 'C%') cancelled,
                  count(*) filter (where quantity < 1) non_positive from marts.fct_interactions""",
    ).iloc[0]
    assert fct.n == recon.kept_rows and fct.ids == fct.n
    assert fct.cancelled == 0 and fct.non_positive == 0
    # Online Retail II's converter wrote missing descriptions as the text 'nan': they must read as missing.
    assert _query(recsys_home, "select count(*) n from marts.dim_items where lower(title) = 'nan'").n[0] == 0
