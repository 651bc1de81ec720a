"""Stage two: every model's candidates, features as of each cut-off, and a LambdaMART re-ranker.

The ranker learns from the validation window (candidates from models fit before it, labelled with what each
customer bought in it) and is scored on the test window (candidates from models fit before the test cut-off).
Its inputs are checked by a blocking Great Expectations check, including the leak checks, before it trains.
"""

import json
import time

import dagster as dg
import numpy as np
import pandas as pd
from dagster import AssetExecutionContext
from pydantic import Field

from orchestration.defs.baselines import baseline_models
from orchestration.defs.models import phase_models, sasrec_model, text_matrix
from orchestration.defs.quality import expectation_metadata
from orchestration.defs.resources import WarehouseResource
from orchestration.quality.expectations import ranker_input_suite, validate_frame
from orchestration.store.marts import read_interactions
from orchestration.store.model_files import replaced_folder, write_lineage
from orchestration.store.reports import KS, importance_chart_png, markdown_image, markdown_table
from recmodels.metrics import ranking_metrics
from recmodels.ranking import (
    RankerConfig,
    candidate_recall,
    future_event_rows,
    labelled_candidates,
    leak_suspects,
    purchase_events,
    ranker_feature_names,
    rerank_topk,
)
from recmodels.ranking.behaviour import behaviour_events
from recmodels.ranking.distributed import DaskSettings, fit_ranker
from recmodels.recommender import TwoStageConfig
from recmodels.sequences import holds_behaviour
from recmodels.sizing import sized_ranker_config
from recmodels.splits import PHASES, load_split

FEATURES_TABLE = "ml.ranker_features"
FEATURES_SPEC_FILE = "ranker_features.json"  # under the models folder: how the candidates were made
# A single feature separates a handful of purchases perfectly by chance; below this many, the leak check abstains.
LEAK_CHECK_MIN_POSITIVES = 20


class RankerFeaturesConfig(dg.Config):
    n_candidates: int = Field(default=TwoStageConfig.n_candidates, description="Candidates per customer, all sources together.")
    recent_items: int = Field(
        default=TwoStageConfig.recent_items, description="Recent distinct items behind the text_cosine feature."
    )
    behaviour: bool = Field(
        default=True, description="Add the behaviour features (views, carts, favourites before the cut-off) when the "
        "shop records any; false: purchases only.",
    )


@dg.asset(deps=[sasrec_model, baseline_models], group_name="ranking", kinds={"duckdb", "pandas"},
          pool="ranker_features")
def ranker_features(
    context: AssetExecutionContext, config: RankerFeaturesConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Candidates of every model for the validation and test customers, with features as of each cut-off."""
    paths = warehouse.artifacts
    stored = load_split(paths.split_file)
    split = stored.split
    text, _ = text_matrix(warehouse, split.item_ids)
    with warehouse.connect(read_only=True) as con:
        interactions = read_interactions(con)
    events = purchase_events(interactions, split.item_ids)
    behaviour = behaviour_events(interactions, split.item_ids) if config.behaviour else None
    if behaviour is not None and behaviour.empty:
        behaviour = None  # a shop of purchases only: the behaviour features would all be zero
    frames, recall = [], {}
    for phase in PHASES:
        _, _, rows = stored.training(phase)
        models = phase_models(paths, stored, phase)
        cutoff = stored.cutoff(phase)
        features, labels = labelled_candidates({name: m.score for name, m in models.items()}, rows, events,
                                               cutoff, n_candidates=config.n_candidates,
                                               item_text=text, recent_items=config.recent_items, behaviour=behaviour)
        features.insert(0, "phase", phase)
        features.insert(1, "user_key", rows.keys[features["row"].to_numpy()])
        features["cutoff"] = cutoff[features["row"].to_numpy()] if np.ndim(cutoff) else cutoff
        features["label"] = labels
        recall[phase] = candidate_recall(features, rows.targets)
        frames.append(features)
    table = pd.concat(frames, ignore_index=True)
    warehouse.write_table(FEATURES_TABLE, table)
    spec = {"n_candidates": config.n_candidates, "recent_items": config.recent_items, "behaviour": behaviour is not None,
            "sequence_behaviour": holds_behaviour(split.train_for_test, split.n_items),
            "split_hash": stored.content_hash}
    (paths.models_dir / FEATURES_SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    context.log.info(f"{len(table):,} candidate rows; candidate recall {recall}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "candidate_recall": dg.MetadataValue.json({k: round(v, 4) for k, v in recall.items()}),
            "features": dg.MetadataValue.json(ranker_feature_names(table)),
            "table": FEATURES_TABLE,
        }
    )


def _read_features(warehouse: WarehouseResource) -> pd.DataFrame:
    with warehouse.connect(read_only=True) as con:
        return con.execute(f"select * from {FEATURES_TABLE} order by phase, row, item").df()


@dg.asset_check(asset=ranker_features, name="great_expectations", blocking=True)
def ranker_features_expectations(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """No NaN where not allowed, value ranges, a candidate list for every eligible customer, no event at or after
    the cut-off in any feature, and no feature that alone gives the label away (a leak)."""
    table = _read_features(warehouse)
    stored = load_split(warehouse.artifacts.split_file)
    names = ranker_feature_names(table)
    outcome = validate_frame(table, ranker_input_suite(names))
    problems = [] if outcome.success else [outcome.summary()]
    for phase in PHASES:
        part = table[table["phase"] == phase]
        eligible = len(stored.training(phase)[2])
        with_candidates = part["row"].nunique()
        if with_candidates < eligible:
            problems.append(f"{phase}: {eligible - with_candidates} of {eligible} customers have no candidate")
        future = future_event_rows(part, stored.cutoff(phase))
        if future:
            problems.append(f"{phase}: {future} rows use events at or after their cut-off")
    training = table[table["phase"] == "validation"]
    positives = int(training["label"].sum())
    enough = positives >= LEAK_CHECK_MIN_POSITIVES
    suspects = leak_suspects(training, training["label"].to_numpy(), names) if enough else {}
    if suspects:
        shown = ", ".join(f"{name} (AUC {auc:.3f})" for name, auc in suspects.items())
        problems.append(f"features that alone separate purchases from the rest, computed with the answer? {shown}")
    return dg.AssetCheckResult(
        passed=not problems,
        description="\n".join(problems) or f"{outcome.summary()} The leak checks passed.",
        metadata={"rows": len(table), "leak_suspects": dg.MetadataValue.json(suspects),
                  "leak_check": "ran" if enough else f"skipped: {positives} positives < {LEAK_CHECK_MIN_POSITIVES}",
                  **expectation_metadata(outcome)},
    )


class RankerModelConfig(dg.Config):
    n_estimators: int = Field(default=RankerConfig.n_estimators, description="Upper bound on boosting rounds.")
    learning_rate: float = Field(default=RankerConfig.learning_rate)
    num_leaves: int | None = Field(default=None, description="Leaves per tree; null: sized by the training customers "
                                                            "(recmodels.sizing.RANKER_SIZES).")
    min_data_in_leaf: int | None = Field(default=None, description="Rows per leaf at least; null: sized by the "
                                                                   "training customers.")
    n_models: int = Field(default=RankerConfig.n_models,
                          description="LambdaMART models averaged, each early-stopped on its own held-out customers.")
    seed: int = Field(default=RankerConfig.seed)
    dask_scheduler: str | None = Field(default=None, description="Address of a running Dask scheduler (e.g. "
                                       "tcp://10.0.0.5:8786) to train on with lightgbm.dask; null: no cluster.")
    dask_workers: int = Field(default=DaskSettings.workers, description="Else a local Dask cluster of this many "
                              "worker processes for this fit; 0 (and no scheduler): trained here as usual.")


@dg.asset(deps=[ranker_features], group_name="ranking", kinds={"lightgbm"}, pool="ranker_model")
def ranker_model(context: AssetExecutionContext, config: RankerModelConfig, warehouse: WarehouseResource
                 ) -> dg.MaterializeResult:
    """LambdaMART (an average of ``n_models``) on the validation window's candidates; its test-window re-ranking
    is scored here too."""
    paths = warehouse.artifacts
    stored = load_split(paths.split_file)
    table = _read_features(warehouse)
    names = ranker_feature_names(table)
    training, test = table[table["phase"] == "validation"], table[table["phase"] == "test"]
    customers = int(training.loc[training["label"] > 0, "row"].nunique())
    sized = sized_ranker_config(customers)
    ranker_config = RankerConfig(n_estimators=config.n_estimators, learning_rate=config.learning_rate,
                                 num_leaves=config.num_leaves or sized.num_leaves,
                                 min_data_in_leaf=config.min_data_in_leaf or sized.min_data_in_leaf,
                                 n_models=config.n_models, seed=config.seed)
    started = time.perf_counter()
    cluster = DaskSettings(scheduler=config.dask_scheduler, workers=config.dask_workers)
    ranker = fit_ranker(ranker_config, training, training["label"].to_numpy(), training["row"].to_numpy(), names,
                        cluster)
    fit_s = time.perf_counter() - started
    importance = ranker.feature_importance()
    importance_png = importance_chart_png(importance)
    with replaced_folder(paths.models_dir / "ranker") as folder:
        ranker.save(folder)
        importance.to_csv(folder / "feature_importance.csv", index=False)
        (folder / "feature_importance.png").write_bytes(importance_png)
        write_lineage(folder, stored)
    rows = stored.split.test
    topk = rerank_topk(test, ranker.score(test), len(rows), max(KS))
    metrics = ranking_metrics(topk, rows.targets, KS)
    context.log.info(f"Ranker: {len(ranker.best_iterations_)} models of {ranker.best_iterations_} rounds, "
                     f"test NDCG@10 {metrics['ndcg@10']:.4f}")
    return dg.MaterializeResult(
        metadata={
            "training_customers": customers,
            "num_leaves": ranker_config.num_leaves,
            "min_data_in_leaf": ranker_config.min_data_in_leaf,
            "best_iterations": dg.MetadataValue.json(ranker.best_iterations_),
            "held_out_ndcg@10": float(ranker.valid_ndcg_),
            "test_ndcg@10": metrics["ndcg@10"],
            "test_recall@10": metrics["recall@10"],
            "fit_s": round(fit_s, 2),
            "trained_on": cluster.where,
            "feature_importance": dg.MetadataValue.md(markdown_table(importance.set_index("feature").head(20))),
            "feature_importance_chart": dg.MetadataValue.md(markdown_image(importance_png, "gain per feature")),
            "folder": dg.MetadataValue.path(str(paths.models_dir / "ranker")),
        }
    )


ranking_assets = [ranker_features, ranker_model]
ranking_checks = [ranker_features_expectations]
