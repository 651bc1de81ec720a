"""The promotion gate end to end: a good run promotes; four faults are refused and leave the champion in place.

One Dagster instance and one RECSYS_HOME serve the whole module, as in production: the gate reads the latest
check results from the instance and compares with the champion in the MLflow registry.
"""


import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.apps.runner import config_for_selection, materialize
from orchestration.defs.quality import mart_expectation_checks
from orchestration.defs.ranking import ranker_features_expectations
from orchestration.defs.resources import DataSourceResource, MLflowResource, WarehouseResource
from orchestration.registry.bundle import download_version, load_bundle
from orchestration.registry.promotion import BUNDLE_MODEL, current_champion
from recmodels.ranking import compute_features, purchase_events
from recmodels.splits import StoredSplit, load_split, save_split

SMALL_SHOP = {"synthetic_users": 120, "synthetic_items": 60, "synthetic_days": 60, "synthetic_seed": 7}
RUN_CONFIG = {
    "ops": {
        "user_sequences": {"config": {"test_days": 14, "validation_days": 14}},
        "sasrec_model": {"config": {"epochs": 3, "hidden_size": 16, "num_threads": 1}},
    }
}
RETRAIN = "group:models or group:ranking or group:evaluation"


class Shop:
    """The module's RECSYS_HOME and Dagster instance, and helpers to run and inspect them."""

    def __init__(self, home):
        self.home = home
        self.instance = dg.DagsterInstance.ephemeral()
        self.warehouse = WarehouseResource(home=str(home))
        self.client = MLflowResource(home=str(home)).client()

    def run(self, selection, raise_on_error=True):
        resources = {"warehouse": self.warehouse, "mlflow": MLflowResource(home=str(self.home)),
                     "data_source": DataSourceResource(source="synthetic", **SMALL_SHOP)}
        return materialize(selection, resources=resources, instance=self.instance,
                           run_config=config_for_selection(RUN_CONFIG, selection),
                           raise_on_error=raise_on_error, log_level="WARNING", stdout_log=self.home / "dbt.log")

    def execute(self, sql, parameters=None):
        with duckdb.connect(str(self.home / "warehouse.duckdb")) as con:
            con.execute(sql, parameters or [])

    def replace_table(self, table, frame):
        with duckdb.connect(str(self.home / "warehouse.duckdb")) as con:
            con.register("frame", frame)
            con.execute(f"create or replace table {table} as select * from frame")

    def query(self, sql):
        with duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(sql).df()

    def champion_version(self):
        champion = current_champion(self.client)
        return None if champion is None else champion["version"]

    def decisions(self):
        return self.query("select * from ml.promotion_log order by decided_at")


def _promoted_check(result):
    (evaluation,) = [c for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("promotion_decision")]
    return evaluation


def _decision(result):
    return {key: value.value for key, value in result.asset_materializations_for_node("promotion_decision")[0].metadata.items()}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    home = tmp_path_factory.mktemp("gate") / "recsys-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECSYS_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        shop = Shop(home)
        first = shop.run(None)
        shop.first = first
        yield shop


def test_a_good_first_run_is_promoted(shop):
    decision = _decision(shop.first)
    assert decision["decision"] == "promoted", decision["reasons"]
    assert decision["champion_before"] == "none" and decision["champion_after"] == "1"
    assert decision["failed_checks"] == [] and decision["blocking_checks_seen"] > 50
    assert _promoted_check(shop.first).passed
    # Ranked before the alias moved: every customer's answer, ready for a server of this champion.
    ranked = shop.query("select count(distinct user_id) as customers, count(distinct bundle_digest) as bundles "
                        "from ml.ranked_answers")
    assert decision["ranked_ahead"] == ranked["customers"].item() > 0 and ranked["bundles"].item() == 1
    champion = current_champion(shop.client)
    # A promoted version carries its reasons, as a refused one does.
    assert "No blocking check failed." in champion["promotion_reasons"]
    # The champion serves the evaluation's winner (on this small shop, whichever model that is).
    serves = shop.client.get_model_version(BUNDLE_MODEL, "1").tags["serves"]
    evaluation = shop.query("select value from ml.evaluation_metrics where split = 'test' and variant = 'allowed' "
                            f"and segment = 'all' and metric = 'ndcg' and k = 10 and model = '{serves}'")
    assert champion["version"] == 1 and champion["metrics"]["ndcg@10"] == pytest.approx(evaluation["value"].item())
    assert champion["data_version"] == shop.first.asset_materializations_for_node("clean_data_version")[0].metadata[
        "version"].value

    # The registered bundle reloads on its own and ranks the test rows exactly as evaluation measured.
    from orchestration.defs.evaluation import bundle_test_metrics

    folder = download_version(shop.client, BUNDLE_MODEL, 1, shop.home / "downloads")
    assert {"sasrec", "baselines", "ranker", "item_index.csv", "bundle.json"} <= {p.name for p in folder.iterdir()}
    stored = load_split(shop.home / "artifacts" / "user_sequences" / "split.npz")
    interactions = shop.query("select * from marts.fct_interactions")
    metrics = bundle_test_metrics(load_bundle(folder), stored, interactions, np.array([], np.int64))
    assert metrics["ndcg@10"] == pytest.approx(champion["metrics"]["ndcg@10"], abs=1e-12)


def test_a_weak_model_from_a_truncated_training_set_is_refused(shop):
    split_file = shop.home / "artifacts" / "user_sequences" / "split.npz"
    stored = load_split(split_file)
    keep = 5  # a handful of customers: what a broken extract might hand over
    truncated = stored.split.__class__(**{**stored.split.__dict__, "train": stored.split.train[:keep],
                                          "train_for_test": stored.split.train_for_test[:keep]})
    save_split(StoredSplit(truncated, stored.train_times[:keep], stored.train_for_test_times[:keep], stored.info),
               split_file)
    result = shop.run("key:sasrec_model or key:baseline_models or group:ranking or group:evaluation")
    decision = _decision(result)
    assert decision["decision"] == "refused" and decision["model_version"] == 2
    assert decision["ranked_ahead"] is None  # nothing ranked for a bundle that does not serve
    # Paired with the champion on the same customers: worse with confidence, not only on average.
    assert "so the challenger may be worse" in decision["reasons"], decision["reasons"]
    row = shop.decisions().iloc[-1]
    assert row["champion_difference_ci_low"] < -0.01 and row["compared_customers"] == len(stored.split.test)
    assert row["champion_difference"] == pytest.approx(row["challenger_ndcg_10"] - row["previous_champion_ndcg_10"])
    assert shop.champion_version() == 1
    version = shop.client.get_model_version(BUNDLE_MODEL, "2")
    assert version.tags["promotion"] == "refused" and "may be worse" in version.tags["refusal_reasons"]
    # Visible at a glance: a failed check of warning severity, with the reasons, not only a green asset.
    check = _promoted_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "may be worse" in check.description


def test_a_good_retrain_on_the_same_data_is_promoted_again(shop):
    decision = _decision(shop.run("key:user_sequences or " + RETRAIN))  # the full split again
    # Same data, same seeds: the champion re-scored on the same customers ranks each of them alike.
    assert decision["decision"] == "promoted" and decision["champion_before"] == "1", decision["reasons"]
    assert decision["model_version"] == 3 and shop.champion_version() == 3
    log = shop.decisions()
    assert log["previous_champion_ndcg_10"].iloc[-1] == pytest.approx(log["challenger_ndcg_10"].iloc[-1], abs=1e-12)
    assert (log["champion_difference_ci_low"].iloc[-1], log["champion_difference_ci_high"].iloc[-1]) == (
        pytest.approx(0, abs=1e-12), pytest.approx(0, abs=1e-12))


def test_nan_embeddings_stop_the_retrain_before_promotion(shop):
    dim = shop.query("select dim from embeddings.text_embedding_cache limit 1")["dim"].item()
    poisoned = np.full(dim, np.nan, dtype="<f4").tobytes()
    # A corrupted cache entry is read back as a NaN vector on the next embedding run.
    shop.execute("update embeddings.text_embedding_cache set vector = ? where text_sha256 in "
                 "(select text_sha256 from embeddings.text_embedding_cache order by text_sha256 limit 3)", [poisoned])
    versions_before = len(shop.client.search_model_versions(f"name = '{BUNDLE_MODEL}'"))
    result = shop.run("group:embeddings or " + RETRAIN, raise_on_error=False)
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert not checks[("item_embeddings", "great_expectations")].passed
    assert not result.asset_materializations_for_node("promotion_decision")  # blocked downstream
    assert len(shop.client.search_model_versions(f"name = '{BUNDLE_MODEL}'")) == versions_before
    assert shop.champion_version() == 3

    # Promotion asked for on its own still reads the failed check and refuses.
    alone = _decision(shop.run("key:promotion_decision"))
    assert alone["decision"] == "refused" and "item_embeddings:great_expectations" in alone["failed_checks"]
    assert shop.champion_version() == 3
    shop.execute("delete from embeddings.text_embedding_cache where vector = ?", [poisoned])
    shop.run("group:embeddings")  # re-embedded, checked, passing again


def test_a_failed_upstream_data_check_refuses_promotion(shop):
    shop.execute("create table scratch_backup as select * from marts.fct_interactions")
    shop.execute("update marts.fct_interactions set quantity = -quantity where source_row % 7 = 0")
    fct_check = next(c for c in mart_expectation_checks if any(k.asset_key.path == ["fct_interactions"]
                                                              and k.name == "great_expectations" for k in c.check_keys))
    failed = shop.run(dg.AssetSelection.checks(fct_check), raise_on_error=False)
    assert not failed.get_asset_check_evaluations()[0].passed
    # The data is put right, but nobody re-ran the check: its failure still stands and blocks.
    shop.execute("create or replace table marts.fct_interactions as select * from scratch_backup")
    shop.execute("drop table scratch_backup")
    decision = _decision(shop.run(RETRAIN))
    assert decision["decision"] == "refused" and decision["failed_checks"] == ["fct_interactions:great_expectations"]
    assert "Blocking checks failed: fct_interactions:great_expectations." in decision["reasons"]
    assert shop.champion_version() == 3
    shop.run(dg.AssetSelection.checks(fct_check))  # passes again on the restored data


def test_a_feature_computed_with_future_data_is_caught(shop):
    features = shop.query("select * from ml.ranker_features order by phase, row, item")
    stored = load_split(shop.home / "artifacts" / "user_sequences" / "split.npz")
    events = purchase_events(shop.query("select * from marts.fct_interactions"), stored.split.item_ids)
    validation = features[features["phase"] == "validation"]
    # The bug: features of the training window computed as of the end of the data, answers included.
    later = pd.Timestamp(stored.info["last_event"]) + pd.Timedelta(days=1)
    leaked = compute_features(validation[["row", "item"]], stored.split.validation.keys, events, later)
    for column in leaked.columns.drop(["row", "item"]):
        validation = validation.assign(**{column: leaked[column].to_numpy()})
    tampered = pd.concat([validation, features[features["phase"] == "test"]], ignore_index=True)
    shop.replace_table("ml.ranker_features", tampered)
    result = shop.run(dg.AssetSelection.checks(ranker_features_expectations)
                      | dg.AssetSelection.assets("ranker_model", "evaluation_metrics", "recommender_bundle",
                                                 "promotion_decision"), raise_on_error=False)
    outcome = result.get_asset_check_evaluations()[0]
    assert not outcome.passed
    assert "use events at or after their cut-off" in outcome.description
    assert not result.asset_materializations_for_node("promotion_decision")
    alone = _decision(shop.run("key:promotion_decision"))
    assert alone["decision"] == "refused" and alone["failed_checks"] == ["ranker_features:great_expectations"]
    assert shop.champion_version() == 3
    log = shop.decisions()
    assert set(log.loc[log["promoted"], "version"]) == {1, 3} and len(log) == 6
    assert shop.client.get_registered_model(BUNDLE_MODEL).tags["champion_history"] == "[1]"


def test_the_registered_bundle_is_a_pyfunc_with_a_signature(shop):
    import mlflow

    uri = f"models:/{BUNDLE_MODEL}/1"
    signature = mlflow.models.get_model_info(uri).signature
    assert signature.inputs.input_names() == ["history"] and signature.outputs.input_names() == ["items", "scores"]
    items = pd.read_csv(download_version(shop.client, BUNDLE_MODEL, 1, shop.home / "downloads") / "item_index.csv")
    known = items["item_id"].astype(str).tolist()
    model = mlflow.pyfunc.load_model(uri)
    out = model.predict(pd.DataFrame({"history": [known[:3], ["no-such-item"]]}), params={"k": 5})
    assert [len(row) for row in out["items"]] == [5, 5]
    assert all(set(row) <= set(known) for row in out["items"])
    assert all(list(row) == sorted(row, reverse=True) for row in out["scores"])
