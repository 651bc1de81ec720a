"""The models group through Dagster on a small synthetic shop: split, SASRec in MLflow, baselines, candidates, metrics."""

import json
import math

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd

from orchestration.apps.runner import materialize
from orchestration.defs.resources import DataSourceResource, MLflowResource, WarehouseResource
from recmodels import sasrec
from recmodels.metrics import evaluate
from recmodels.ranking import RankerConfig
from recmodels.splits import load_split

SMALL_SHOP = {"synthetic_users": 120, "synthetic_items": 60, "synthetic_days": 60, "synthetic_seed": 7}
TOP_K = 20
RUN_CONFIG = {
    "ops": {
        "user_sequences": {"config": {"test_days": 14, "validation_days": 14}},
        "sasrec_model": {"config": {"epochs": 2, "hidden_size": 16, "num_threads": 1}},
        "candidate_scores": {"config": {"top_k": TOP_K}},
    }
}
SOURCES = {"sasrec", "popularity", "recent-popularity", "buy-again", "item-knn", "text-knn"}


def _run(home, selection, run_config=RUN_CONFIG, raise_on_error=True):
    resources = {
        "warehouse": WarehouseResource(home=str(home)),
        "data_source": DataSourceResource(source="synthetic", **SMALL_SHOP),
        "mlflow": MLflowResource(home=str(home)),
    }
    return materialize(selection, resources=resources, instance=dg.DagsterInstance.ephemeral(), run_config=run_config,
                       raise_on_error=raise_on_error, log_level="WARNING", stdout_log=home / "dbt.log")


def _query(home, sql):
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).df()


def _metadata(result, node):
    return {key: value.value for key, value in result.asset_materializations_for_node(node)[0].metadata.items()}


def _popularity_ndcg_at_10(home, behaviour_weight: float) -> tuple[float, list[str]]:
    """Test NDCG@10 of global popularity and its top 10, recomputed from ml.user_sequences alone: a purchase counts
    1 and a view, cart or favourite ``behaviour_weight``; targets and returning customers are purchases."""
    events = _query(home, "select sequence_key, item_id, event_type, period from ml.user_sequences")
    before = events[events["period"] != "test"]
    weights = np.where(before["event_type"] == "purchase", 1.0, behaviour_weight)
    counts = pd.Series(weights, index=before["item_id"].to_numpy()).groupby(level=0).sum()
    purchases = pd.Series((before["event_type"] == "purchase").to_numpy(float), index=before["item_id"].to_numpy())
    bought = purchases.groupby(level=0).sum()
    # More weighted events first, then more purchases; equal ones go to the lower (sorted) item id, as the
    # baseline breaks ties.
    top = sorted(counts.index, key=lambda item: (-counts[item], -bought[item], item))[:10]
    gains, returning = [], set(before.loc[before["event_type"] == "purchase", "sequence_key"])
    test = events[(events["period"] == "test") & (events["event_type"] == "purchase")]
    for key, targets in test.groupby("sequence_key")["item_id"]:
        if key not in returning:
            continue  # no history before the test cut-off: not a test row
        targets = set(targets)
        dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(top) if item in targets)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(10, len(targets))))
        gains.append(dcg / ideal)
    return float(np.mean(gains)), top


def test_models_group_end_to_end(recsys_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray ./mlruns would appear here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = _run(recsys_home, None)
    split_meta, model_meta = _metadata(first, "user_sequences"), _metadata(first, "sasrec_model")
    assert split_meta["test_cutoff"] == "2024-12-18" and split_meta["validation_cutoff"] == "2024-12-04"

    # The split's table: every sequence is numbered 0..n-1 in time order.
    sequences = _query(recsys_home, "select * from ml.user_sequences order by sequence_key, position")
    assert len(sequences) == split_meta["interactions"]
    assert (sequences.groupby("sequence_key")["position"].agg(lambda p: list(p) == list(range(len(p))))).all()
    assert (sequences.groupby("sequence_key")["occurred_at"].agg(lambda t: t.is_monotonic_increasing)).all()

    # Candidates: ranks 1..K per customer and source, known items only, scores never rising with rank.
    candidates = _query(recsys_home, "select * from ml.candidate_scores order by source, sequence_key, rank")
    assert set(candidates["source"]) == SOURCES
    assert candidates["sequence_key"].nunique() == split_meta["test_rows"]
    ranks = candidates.groupby(["source", "sequence_key"])["rank"].agg(list)
    assert all(r == list(range(1, TOP_K + 1)) for r in ranks)
    assert set(candidates["item_id"]) <= set(sequences["item_id"]) and candidates["item_id"].notna().all()
    assert not candidates.duplicated(["source", "sequence_key", "item_id"]).any()
    assert (candidates.groupby(["source", "sequence_key"])["score"].agg(lambda s: s.is_monotonic_decreasing)).all()

    # Metrics: every model on both splits and variants, values in [0, 1], popularity recomputed by hand.
    metrics = _query(recsys_home, "select * from ml.evaluation_metrics")
    combinations = metrics[metrics["segment"] == "all"].groupby(["model", "split", "variant"]).size()
    # Every source on both splits; the two-stage model only on test (it learned from the validation labels).
    assert len(combinations) == len(SOURCES) * 2 * 2 + 2 and set(metrics["model"]) == SOURCES | {"sasrec+ranker"}
    assert set(metrics.loc[metrics["model"] == "sasrec+ranker", "split"]) == {"test"}
    assert metrics["value"].between(0, 1).all()
    chosen = json.loads((recsys_home / "artifacts" / "models" / "baselines" / "test" / "popularity.json").read_text())
    expected_ndcg, popular = _popularity_ndcg_at_10(recsys_home, chosen["options"]["behaviour_weight"])
    row = metrics.query("model == 'popularity' and split == 'test' and variant == 'allowed' and segment == 'all' "
                        "and metric == 'ndcg' and k == 10")
    assert math.isclose(row["value"].item(), expected_ndcg, rel_tol=1e-9)
    # The same number as a plain float in the asset's metadata, which Dagster's Plots tab draws across runs.
    plotted = first.asset_materializations_for_node("evaluation_metrics")[0].metadata
    assert isinstance(plotted["test/popularity/ndcg@10"], dg.FloatMetadataValue)
    assert math.isclose(plotted["test/popularity/ndcg@10"].value, expected_ndcg, rel_tol=1e-9)
    assert plotted["test/customers"].value == int(row["n_rows"].item())
    assert candidates[candidates["source"] == "popularity"].groupby("sequence_key")["item_id"].agg(lambda i: list(i[:10]) == popular).all()

    # MLflow: one loss and one validation NDCG per epoch, the test metrics, version 1 tagged with the data version.
    client = MLflowResource(home=str(recsys_home)).client()
    run_id = model_meta["mlflow_run_id"]
    epochs = model_meta["epochs_run"]
    for key in ("train/loss", "val/ndcg_10"):  # grouped by prefix in the MLflow UI
        assert [m.step for m in client.get_metric_history(run_id, key)] == list(range(1, epochs + 1))
    run = client.get_run(run_id)
    assert math.isclose(run.data.metrics["test/ndcg_10"], model_meta["test_ndcg@10"])
    assert run.data.tags["mlflow.note.content"].startswith("SASRec")
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "marts.fct_interactions"
    assert dataset.dataset.digest == _metadata(first, "clean_data_version")["version"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert model_meta["mlflow_run"] == f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    version = client.get_model_version("recsys-sasrec", "1")
    assert version.run_id == run_id
    assert version.tags["data_version"] == _metadata(first, "clean_data_version")["version"]

    # The registered folder reloads on its own and scores exactly as the model did before it was saved.
    folder = mlflow.artifacts.download_artifacts("models:/recsys-sasrec/1", dst_path=str(tmp_path / "registered"))
    model, item_ids = sasrec.load(tmp_path / "registered"), sasrec.load_item_ids(tmp_path / "registered")
    split = load_split(recsys_home / "artifacts" / "user_sequences" / "split.npz").split
    assert list(item_ids) == list(split.item_ids), folder
    assert evaluate(model.score, split.test, split.n_items, (10,))["ndcg@10"] == model_meta["test_ndcg@10"]

    _assert_ranking(recsys_home, first, split)

    # Same inputs, same tables; the second training run registers version 2.
    second = _run(recsys_home, "group:models")
    assert _metadata(second, "sasrec_model")["model_version"] == 2
    assert sorted(int(v.version) for v in client.search_model_versions("name = 'recsys-sasrec'")) == [1, 2]
    again = _query(recsys_home, "select * from ml.candidate_scores order by source, sequence_key, rank")
    pd.testing.assert_frame_equal(again, candidates)

    # Windows longer than the data: the split fails and says why.
    long_windows = {"ops": {"user_sequences": {"config": {"test_days": 40, "validation_days": 30}}}}
    failed = _run(recsys_home, "user_sequences", run_config=long_windows, raise_on_error=False)
    message = failed.get_step_failure_events()[0].step_failure_data.error.message
    assert "Too few events to split" in message and "validation cut-off 2024-10-23, test cut-off 2024-11-22" in message

    # A new split makes the saved models stale: scoring with them is refused rather than silently misaligned.
    _run(recsys_home, "user_sequences", run_config={"ops": {"user_sequences": {"config": {"test_days": 10}}}})
    stale = _run(recsys_home, "candidate_scores", run_config={"ops": {}}, raise_on_error=False)
    assert "were fit on another split" in stale.get_step_failure_events()[0].step_failure_data.error.message


def _assert_ranking(home, result, split):
    """Stage two on the same run: candidates with features as of each cut-off, a passed leak check, a ranker."""
    from orchestration.defs.ranking import ranker_features_expectations

    features = _query(home, "select * from ml.ranker_features")
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["great_expectations"] and all(checks.values())
    for phase, rows in (("validation", split.validation), ("test", split.test)):
        part = features[features["phase"] == phase]
        assert part["row"].nunique() == len(rows)  # every eligible customer has candidates
        assert (part["features_as_of"].dropna() < part["cutoff"].iloc[0]).all()
        # Labels are exactly the candidates the customer bought in the window.
        bought = {(row, item) for row, targets in enumerate(rows.targets) for item in targets}
        assert part["label"].tolist() == [int((r, i) in bought) for r, i in zip(part["row"], part["item"])]
    meta = _metadata(result, "ranker_model")
    assert 0 <= meta["test_ndcg@10"] <= 1 and len(meta["best_iterations"]) == RankerConfig.n_models
    assert min(meta["best_iterations"]) >= 1
    assert sorted(p.name for p in (home / "artifacts" / "models" / "ranker").iterdir()) == [
        "feature_importance.csv", "feature_importance.png", "lineage.json",
        *(f"ranker-{i}.txt" for i in range(RankerConfig.n_models)), "ranker.json"]
    assert meta["trained_on"] == "this process"
    # The switch to a Dask cluster (here a local one of two workers, started and closed by the asset).
    on_dask = _run(home, "ranker_model", run_config={"ops": {"ranker_model": {"config": {"dask_workers": 2}}}})
    dask_meta = _metadata(on_dask, "ranker_model")
    assert dask_meta["trained_on"] == "local Dask cluster of 2 workers" and 0 <= dask_meta["test_ndcg@10"] <= 1
    assert len(dask_meta["best_iterations"]) == RankerConfig.n_models

    # A feature computed with the answer (here: the label itself) is caught by the blocking check.
    leaked = features.assign(user_item_purchases=features["label"] * 7)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("create or replace table ml.ranker_features as select * from leaked")
    outcome = ranker_features_expectations(warehouse=WarehouseResource(home=str(home)))
    assert not outcome.passed and "user_item_purchases (AUC 1.000)" in outcome.description
