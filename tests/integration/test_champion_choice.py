"""A champion for every shop: when a baseline wins the evaluation, the bundle serves that baseline, end to end."""

import dagster as dg
import duckdb
import numpy as np
import pytest

from orchestration.apps.runner import config_for_selection, materialize
from orchestration.defs.evaluation import bundle_test_topk
from orchestration.defs.resources import DataSourceResource, MLflowResource, WarehouseResource
from orchestration.registry.bundle import download_version, load_bundle
from orchestration.registry.promotion import BUNDLE_MODEL, current_champion
from orchestration.store.model_files import load_phase_models
from recmodels.metrics import ranked_topk
from recmodels.splits import load_split

SHOP = {"synthetic_users": 120, "synthetic_items": 60, "synthetic_days": 60, "synthetic_seed": 7}
RUN_CONFIG = {"ops": {"user_sequences": {"config": {"test_days": 14, "validation_days": 14}},
                      "sasrec_model": {"config": {"epochs": 2, "hidden_size": 16, "num_threads": 1}},
                      "ranker_model": {"config": {"n_estimators": 1, "num_leaves": 2, "n_models": 1}},
                      "user_recommendations": {"config": {"k": 5}}}}


def _run(home, instance, selection):
    resources = {"warehouse": WarehouseResource(home=str(home)), "mlflow": MLflowResource(home=str(home)),
                 "data_source": DataSourceResource(source="synthetic", **SHOP)}
    return materialize(selection, resources=resources, instance=instance,
                       run_config=config_for_selection(RUN_CONFIG, selection), log_level="WARNING",
                       stdout_log=home / "dbt.log")


def test_a_baseline_that_wins_the_evaluation_is_promoted_and_served(tmp_path):
    home, instance = tmp_path / "recsys-home", dg.DagsterInstance.ephemeral()
    # A re-ranker that can hardly learn (one tree of two leaves): what a shop with too few customers to learn
    # from gets. Buy-again, which needs only each customer's own history, ranks better.
    result = _run(home, instance, None)
    split_file = home / "artifacts" / "user_sequences" / "split.npz"

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        ndcg = dict(con.execute("select model, value from ml.evaluation_metrics where split = 'test' and variant = "
                                "'allowed' and segment = 'all' and metric = 'ndcg' and k = 10").fetchall())
        recommended = con.execute("select count(distinct user_id), min(model_version) from ml.user_recommendations"
                                  ).fetchone()
        known = con.execute("select count(*) from marts.dim_users where not is_anonymous").fetchone()[0]
    winner = max(ndcg, key=ndcg.get)
    assert winner not in ("sasrec+ranker", "sasrec"), ndcg  # the premise: a baseline won
    decision = result.asset_materializations_for_node("promotion_decision")[0].metadata
    assert decision["decision"].value == "promoted" and decision["serves"].value == winner
    assert "beats the best other model" in decision["reasons"].value

    client = MLflowResource(home=str(home)).client()
    champion = current_champion(client)
    assert champion["version"] == 1 and champion["metrics"]["ndcg@10"] == pytest.approx(ndcg[winner])
    assert client.get_model_version(BUNDLE_MODEL, "1").tags["serves"] == winner
    bundle = load_bundle(download_version(client, BUNDLE_MODEL, 1, tmp_path / "downloads"))
    assert bundle.spec["serves"] == winner
    assert bundle.compile_ranker(WarehouseResource(home=str(home)).paths) == 0  # the ranker orders nothing served

    # The bundle ranks the test customers exactly as the baseline did when it was evaluated, ...
    stored = load_split(split_file)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        interactions = con.execute("select * from marts.fct_interactions").df()
    baseline = load_phase_models(WarehouseResource(home=str(home)).artifacts, stored, "test")[winner]
    expected = ranked_topk(baseline.score, stored.split.test, stored.split.n_items, 10)
    assert np.array_equal(bundle_test_topk(bundle, stored, interactions)[:, :10], expected)
    # ... and every known customer gets its recommendations from version 1.
    assert recommended == (known, 1)
