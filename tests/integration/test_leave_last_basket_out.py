"""A shop split by each customer's last basket, end to end: per-customer cut-offs reach the ranker's features, the
leak checks, the evaluation and the champion."""

import dagster as dg
import duckdb
import numpy as np

from orchestration.apps.runner import config_for_selection, materialize
from orchestration.defs.resources import DataSourceResource, MLflowResource, WarehouseResource
from orchestration.registry.promotion import current_champion
from orchestration.store.reports import split_lines
from recmodels.splits import load_split

SHOP = {"synthetic_users": 80, "synthetic_items": 50, "synthetic_days": 60, "synthetic_seed": 3}
RUN_CONFIG = {"ops": {"user_sequences": {"config": {"split": "leave-last-basket-out"}},
                      "sasrec_model": {"config": {"epochs": 2, "hidden_size": 16, "num_threads": 1}},
                      "ranker_model": {"config": {"n_estimators": 5, "n_models": 1}},
                      "user_recommendations": {"config": {"k": 5}}}}


def test_the_pipeline_holds_out_each_customers_last_basket(tmp_path):
    home = tmp_path / "recsys-home"
    resources = {"warehouse": WarehouseResource(home=str(home)), "mlflow": MLflowResource(home=str(home)),
                 "data_source": DataSourceResource(source="synthetic", **SHOP)}
    result = materialize(None, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                         run_config=config_for_selection(RUN_CONFIG, None), log_level="WARNING",
                         stdout_log=home / "dbt.log")
    assert result.success
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        # Customers with two baskets or more, and three or more, counted in SQL from the marts.
        returning, thrice = con.execute("""
            select count(*) filter (where n >= 2), count(*) filter (where n >= 3) from (
                select user_id, count(distinct basket_start) as n from (
                    select user_id, min(occurred_at) as basket_start from marts.fct_interactions
                    where event_type = 'purchase' and user_id is not null group by user_id, basket_id)
                group by user_id)""").fetchone()
        features = con.execute("select phase, row, cutoff, features_as_of from ml.ranker_features").df()
        evaluated = con.execute("select max(n_rows) from ml.evaluation_metrics where split = 'test' and "
                                "segment = 'all'").fetchone()[0]
        recommended = con.execute("select count(distinct user_id) from ml.user_recommendations").fetchone()[0]
        known = con.execute("select count(*) from marts.dim_users where not is_anonymous").fetchone()[0]

    stored = load_split(home / "artifacts" / "user_sequences" / "split.npz")
    meta = result.asset_materializations_for_node("user_sequences")[0].metadata
    assert meta["split_rule"].value == "leave-last-basket-out"
    assert (len(stored.split.test), len(stored.split.validation)) == (returning, thrice) and evaluated == returning
    assert meta["test_cutoff"].value.startswith("per customer, ")
    # Each candidate row carries its customer's own cut-off, and its features read nothing at or after it.
    test = features[features["phase"] == "test"]
    own = stored.split.test.cutoffs[test["row"].to_numpy()]
    assert (test["cutoff"].to_numpy().astype("datetime64[ns]") == own).all() and len(np.unique(own)) > 1
    as_of = features["features_as_of"].dropna()
    assert (as_of < features.loc[as_of.index, "cutoff"]).all()
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks[("ranker_features", "great_expectations")]  # the per-row point-in-time and leak checks
    assert current_champion(MLflowResource(home=str(home)).client()) is not None
    assert recommended == known
    lines = split_lines(stored.info, len(stored.split.validation), len(stored.split.test), len(stored.split.train_for_test))
    assert lines[0] == "Evaluation split: leave-last-basket-out, each customer's own cut-offs"
    assert lines[3].endswith(f"{returning:,} customers") and lines[2].endswith(f"{thrice:,} customers")
