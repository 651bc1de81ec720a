"""Evaluation of every model on one split, the recommender bundle, and the promotion gate in the MLflow registry.

``evaluation_metrics`` scores the baselines, SASRec and SASRec + ranker on the same rows. ``recommender_bundle``
registers the two-stage model as a new version of ``recsys-recommender``. ``promotion_decision`` moves the
``champion`` alias to it only when every blocking check upstream passed, it beats the best baseline and it is
no worse than the champion re-scored on the same rows; otherwise it tags the version with the reasons.
"""

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from dagster import AssetExecutionContext
from pydantic import Field

from orchestration.defs.models import TRACKING_FILE, phase_models
from orchestration.defs.ranking import FEATURES_SPEC_FILE, FEATURES_TABLE, ranker_model
from orchestration.defs.resources import MLflowResource, PrivacyResource, PromotionGateResource, WarehouseResource
from orchestration.registry.bundle import (
    ARTIFACT_KEY,
    HISTORY_COLUMN,
    PYFUNC_CODE,
    SPEC_FILE,
    Bundle,
    load_bundle,
    pyfunc_signature,
    registered_bundle,
    write_bundle,
)
from orchestration.registry.promotion import (
    BUNDLE_MODEL,
    DEFAULT_TOLERANCE,
    PROMOTION_LOG,
    blocking_check_failures,
    check_states,
    current_champion,
    decide_promotion,
    promote,
    record_refusal,
)
from orchestration.registry.tracking import mlflow_metric_name, register_pyfunc
from orchestration.serving.ranked import rank_ahead
from orchestration.store.marts import read_interactions
from orchestration.store.model_files import fit_on, replaced_folder, write_lineage
from orchestration.store.reports import (
    KS,
    interval_table,
    markdown_image,
    markdown_table,
    metric_rows,
    ndcg_chart_png,
    report_table,
)
from recmodels.metrics import metric_intervals, per_row_metrics, ranked_topk, topk_metrics
from recmodels.ranking import LambdaRanker, purchase_events, rerank_topk
from recmodels.ranking.behaviour import behaviour_events
from recmodels.recommender import RANKER, TwoStageConfig, without_history_items
from recmodels.sequences import purchased_items, reindex_tokens
from recmodels.splits import PHASES, EvalSet, StoredSplit, load_split
from recmodels.stats import PairedComparison, paired_comparison

METRICS_TABLE = "ml.evaluation_metrics"
CUSTOMER_METRICS_TABLE = "ml.customer_metrics"  # each evaluated customer's NDCG@10 per model: the paired gate's input
TWO_STAGE = "sasrec+ranker"
BASELINES = ("popularity", "recent-popularity", "buy-again", "item-knn", "text-knn")
HEADLINE = "ndcg@10"


def _cold_items(stored: StoredSplit, phase: str, max_train_events: int) -> np.ndarray:
    train, _, _ = stored.training(phase)
    counts = np.bincount(np.concatenate(train), minlength=stored.split.n_items + 1)
    return np.flatnonzero(counts[1:] <= max_train_events) + 1


def _scored(model: str, phase: str, variant: str, topk: np.ndarray, rows: EvalSet, n_items: int,
            cold: np.ndarray) -> tuple[list[dict], pd.DataFrame]:
    """Metric rows with their intervals, and each customer's headline metric (for paired comparisons), from one
    pass of per-customer metrics."""
    per_row = per_row_metrics(topk, rows.targets, KS) if len(rows) else None
    results = topk_metrics(topk, rows.targets, n_items, KS, cold, per_row)
    intervals = metric_intervals(topk, rows.targets, n_items, KS, cold, per_row)
    per_customer = pd.DataFrame({"model": model, "split": phase, "variant": variant,
                                 "customer": np.asarray(rows.keys).astype(str),
                                 "ndcg_10": per_row[HEADLINE] if per_row is not None else np.array([], float)})
    return metric_rows(model, phase, variant, results, intervals), per_customer


def _two_stage_rows(warehouse: WarehouseResource, ranker: LambdaRanker, stored: StoredSplit, cold: np.ndarray
                    ) -> tuple[list[dict], list[pd.DataFrame]]:
    """SASRec + ranker on the test rows, from the candidates and features ``ranker_features`` stored."""
    with warehouse.connect(read_only=True) as con:
        candidates = con.execute(f"select * from {FEATURES_TABLE} where phase = 'test' order by row, item").df()
    rows = stored.split.test
    out, per_customer = [], []
    for variant, exclude in (("allowed", False), ("excluded", True)):
        chosen = without_history_items(candidates, rows.histories) if exclude else candidates
        topk = rerank_topk(chosen, ranker.score(chosen), len(rows), max(KS))
        metric, customers = _scored(TWO_STAGE, "test", variant, topk, rows, stored.split.n_items, cold)
        out += metric
        per_customer.append(customers)
    return out, per_customer


SPLIT_PREFIX = {"validation": "val", "test": "test"}  # MLflow metric groups, as the SASRec run names them
PLOTTED = ("ndcg@10", "recall@10", "coverage@10")  # per model and split, as numbers Dagster's Plots tab draws


def _log_evaluation(mlflow: MLflowResource, model_folder: Path, metrics: pd.DataFrame, png: bytes) -> Any | None:
    """Add the comparison to the SASRec run that produced ``model_folder``; returns that run."""
    tracking_file = model_folder / TRACKING_FILE
    if not tracking_file.exists():
        return None
    run_id = json.loads(tracking_file.read_text())["run_id"]
    client = mlflow.client()
    headline = metrics[(metrics["segment"] == "all") & (metrics["metric"] == "ndcg") & (metrics["k"] == 10)]
    for row in headline.itertuples():
        variant = "" if row.variant == "allowed" else "_history_excluded"
        for bound, value in (("", row.value), ("_ci_low", row.ci_low), ("_ci_high", row.ci_high)):
            if pd.notna(value):
                client.log_metric(run_id, mlflow_metric_name(SPLIT_PREFIX[row.split], f"ndcg@10{variant}{bound}",
                                                             row.model), value)
    with tempfile.TemporaryDirectory() as folder:
        metrics.to_csv(Path(folder) / "evaluation_metrics.csv", index=False)
        (Path(folder) / "ndcg_10.png").write_bytes(png)
        client.log_artifacts(run_id, folder, artifact_path="evaluation")
    return client.get_run(run_id)


def plotted_metrics(metrics: pd.DataFrame) -> dict[str, float | int]:
    """``<split>/<model>/<metric>`` for each PLOTTED metric (history allowed, all rows) and the rows each split
    averages over, as plain numbers: Dagster plots a numeric metadata entry across materializations."""
    out: dict[str, float | int] = {}
    for split in PHASES:
        table = report_table(metrics, split=split)
        for model, row in table.iterrows():
            out.update({f"{split}/{model}/{name}": float(row[name]) for name in PLOTTED
                        if name in row and pd.notna(row[name])})
        rows = metrics.loc[(metrics["split"] == split) & (metrics["segment"] == "all"), "n_rows"]
        if len(rows):
            out[f"{split}/customers"] = int(rows.max())
    return out


class EvaluationMetricsConfig(dg.Config):
    cold_max_train_events: int = Field(
        default=10, description="Items with at most this many training events count as cold."
    )


@dg.asset(deps=[ranker_model], group_name="evaluation", kinds={"duckdb", "mlflow"}, pool="evaluation_metrics")
def evaluation_metrics(
    context: AssetExecutionContext, config: EvaluationMetricsConfig, warehouse: WarehouseResource, mlflow: MLflowResource
) -> dg.MaterializeResult:
    """Full-ranking metrics of every model and of SASRec + ranker on one split, history allowed and excluded,
    all rows and cold-item rows."""
    paths = warehouse.artifacts
    stored = load_split(paths.split_file)
    n_items = stored.split.n_items
    rows, per_customer = [], []
    for phase in PHASES:
        _, _, eval_rows = stored.training(phase)
        cold = _cold_items(stored, phase, config.cold_max_train_events)
        for name, model in phase_models(paths, stored, phase).items():
            for variant, exclude in (("allowed", False), ("excluded", True)):
                topk = ranked_topk(model.score, eval_rows, n_items, max(KS), exclude_history=exclude)
                metric, customers = _scored(name, phase, variant, topk, eval_rows, n_items, cold)
                rows += metric
                per_customer.append(customers)
    ranker_folder = paths.models_dir / "ranker"
    if not fit_on(ranker_folder, stored):
        raise dg.Failure("ranker_model was trained on another split than user_sequences holds now: materialize it again.")
    # The ranker learned from the validation rows' labels, so only its test rows are an honest measure.
    two_stage, two_stage_customers = _two_stage_rows(warehouse, LambdaRanker.load(ranker_folder), stored,
                                                     _cold_items(stored, "test", config.cold_max_train_events))
    rows += two_stage
    warehouse.write_table(CUSTOMER_METRICS_TABLE, pd.concat(per_customer + two_stage_customers, ignore_index=True))
    metrics = pd.DataFrame(rows).astype({"k": "Int64"})
    warehouse.write_table(METRICS_TABLE, metrics)
    table = report_table(metrics)
    png = ndcg_chart_png(metrics)
    run = _log_evaluation(mlflow, paths.sasrec_dir("test"), metrics, png)
    best = table["ndcg@10"].idxmax()
    context.log.info(f"Test NDCG@10: {TWO_STAGE} {table.at[TWO_STAGE, 'ndcg@10']:.4f}, SASRec "
                     f"{table.at['sasrec', 'ndcg@10']:.4f}, best {best} {table.at[best, 'ndcg@10']:.4f}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(metrics),
            **plotted_metrics(metrics),
            "best_model_test_ndcg@10": best,
            "test_metrics_history_allowed": dg.MetadataValue.md(markdown_table(table)),
            "test_ndcg@10_intervals": dg.MetadataValue.md(markdown_table(interval_table(metrics))),
            "ndcg@10_chart": dg.MetadataValue.md(markdown_image(png, "NDCG@10 per model")),
            **({} if run is None else {"mlflow_run": mlflow.run_link(run), "mlflow_run_id": run.info.run_id}),
            "table": METRICS_TABLE,
        }
    )


BUNDLE_RUN_DESCRIPTION = (
    "The two-stage recommender as one registered version: SASRec and the baselines propose candidates, the "
    "LightGBM ranker orders them. test/ holds its full-ranking metrics on the test window and, under "
    "test/ndcg_10/<model>, every single model's on the same rows. The promotion gate reads these."
)


def _test_metrics(warehouse: WarehouseResource) -> pd.DataFrame:
    """model x metric@K of the test rows, history allowed, all rows (``report_table``)."""
    return report_table(warehouse.read_table(METRICS_TABLE))


def evaluated_winner(table: pd.DataFrame) -> str:
    """The model with the best test NDCG@10 of those evaluated on the same rows; on a tie the two-stage model,
    then SASRec, then the baselines in their order. (Chosen on the test rows, which the gate then reads too: with
    seven candidates the winner's figure is slightly optimistic, and the paired gate against the champion keeps
    the margin honest.)"""
    preference = [TWO_STAGE, "sasrec", *BASELINES]
    scores = table[HEADLINE].dropna()
    if scores.empty:
        raise dg.Failure(f"No model has a test {HEADLINE} in {METRICS_TABLE}: nothing to choose from.")
    best = scores.max()
    tied = [name for name in scores.index if scores[name] == best]
    return min(tied, key=lambda name: preference.index(name) if name in preference else len(preference))


def served_by(model: str) -> str:
    """The bundle's ``serves`` for an evaluated model name: the ranker for the two-stage model, else the source."""
    return RANKER if model == TWO_STAGE else model


def evaluated_name(serves: str) -> str:
    return TWO_STAGE if serves == RANKER else serves


@dg.asset(deps=[evaluation_metrics], group_name="evaluation", kinds={"mlflow"}, pool="recommender_bundle")
def recommender_bundle(context: AssetExecutionContext, warehouse: WarehouseResource, mlflow: MLflowResource
                       ) -> dg.MaterializeResult:
    """SASRec, the baselines, the ranker, the feature spec and the item index as one registered MLflow version,
    served by the model that won the evaluation: the ranker over every source, or SASRec or a baseline alone."""
    import mlflow as mlflow_api

    paths = warehouse.artifacts
    stored = load_split(paths.split_file)
    folders = {"sasrec": paths.sasrec_dir("test"), "baselines": paths.baselines_dir("test"),
               "ranker": paths.models_dir / "ranker"}
    stale = [name for name, folder in folders.items() if not fit_on(folder, stored)]
    if stale:
        raise dg.Failure(f"{', '.join(stale)} were fit on another split than user_sequences holds now.")
    table = _test_metrics(warehouse)
    winner = evaluated_winner(table)
    serves = served_by(winner)
    metrics = {name: float(value) for name, value in table.loc[winner].items() if pd.notna(value)}
    feature_spec = json.loads((paths.models_dir / FEATURES_SPEC_FILE).read_text())
    config = TwoStageConfig.from_spec(feature_spec)
    data_version = stored.info["data_version"]
    info = {"data_version": data_version, "split": stored.split.name, "split_hash": stored.content_hash[:16],
            "test_cutoff": stored.info["test_cutoff"], "last_event": stored.info["last_event"], "test_metrics": metrics}
    # ranker_model drew the importance chart; the bundle (logged as the run's model/) carries it and the table.
    importance_png = (folders["ranker"] / "feature_importance.png").read_bytes()
    tags = {"data_version": data_version, "dagster_run_id": context.run_id, "split": stored.split.name}
    with replaced_folder(paths.models_dir / "bundle") as folder:
        spec = write_bundle(folder, folders["sasrec"], folders["baselines"], folders["ranker"], config, info, serves)
        write_lineage(folder, stored)
        with mlflow.start_run("recommender-bundle", tags=tags, description=BUNDLE_RUN_DESCRIPTION) as run:
            mlflow.log_data_version(warehouse.warehouse().dataset_uri, "marts.fct_interactions", data_version, context="training")
            mlflow_api.log_params({"serves": serves, "sources": ",".join(spec["sources"]), "n_candidates": config.n_candidates,
                                   "recent_items": config.recent_items, "features": len(spec["features"]),
                                   "split_hash": info["split_hash"]})
            mlflow_api.log_metrics({mlflow_metric_name("test", k): v for k, v in metrics.items()})
            mlflow_api.log_metrics({mlflow_metric_name("test", HEADLINE, name): float(value)
                                    for name, value in table[HEADLINE].items() if name != winner and pd.notna(value)})
            example = pd.DataFrame({HISTORY_COLUMN: [[str(item) for item in stored.split.item_ids[:3]]]})
            version = register_pyfunc(folder, BUNDLE_MODEL, PYFUNC_CODE, ARTIFACT_KEY, pyfunc_signature(), example,
                                      tags={"data_version": data_version, "split_hash": info["split_hash"],
                                            "serves": serves})
        tracking = {"run_id": run.info.run_id, "model": BUNDLE_MODEL, "version": int(version.version)}
        (folder / TRACKING_FILE).write_text(json.dumps(tracking, indent=2) + "\n")
    context.log.info(f"{BUNDLE_MODEL} version {version.version} serves {winner}, the best of the models evaluated: "
                     f"test {HEADLINE} {metrics.get(HEADLINE, float('nan')):.4f}")
    return dg.MaterializeResult(
        metadata={
            "registered_model": BUNDLE_MODEL,
            "model_version": int(version.version),
            "registered_version": mlflow.model_version_link(BUNDLE_MODEL, version.version),
            "mlflow_run": mlflow.run_link(run),
            "mlflow_run_id": run.info.run_id,
            "test_ndcg@10": metrics.get(HEADLINE, float("nan")),
            "serves": winner,
            "sources": dg.MetadataValue.json(spec["sources"]),
            "feature_importance": dg.MetadataValue.md(markdown_image(importance_png, "ranker feature importance")),
            "data_version": data_version,
            "folder": dg.MetadataValue.path(str(paths.models_dir / "bundle")),
        }
    )


def bundle_test_topk(bundle: Bundle, stored: StoredSplit, interactions: pd.DataFrame) -> np.ndarray:
    """A bundle, possibly trained on other data with another item index, ranking ``stored``'s test rows: its
    top-K in the split's internal ids.

    Histories and events are translated into the bundle's ids; its top-K back into the split's, where an item
    the split does not know becomes a miss (PAD). Targets stay the split's, so every bundle is measured on the
    same rows with the same denominators.
    """
    split = stored.split
    rows = split.test
    to_bundle = bundle.internal_ids(split.item_ids)  # split internal id i + 1 -> bundle id
    to_bundle = np.concatenate([[0], to_bundle])
    n_bundle = len(bundle.item_ids)
    histories = [reindex_tokens(h, to_bundle, split.n_items, n_bundle) for h in rows.histories]
    if not bundle.recommender.config.sequence_behaviour:  # a champion of purchases only reads purchases
        histories = [purchased_items(h, n_bundle) for h in histories]
    events = purchase_events(interactions, bundle.item_ids)
    ranked = bundle.recommender.rank(histories, rows.keys, events, stored.cutoff("test"),
                                     behaviour=behaviour_events(interactions, bundle.item_ids))
    topk = bundle.recommender.topk(ranked, len(rows), max(KS))
    back = pd.Index(split.item_ids.astype(str)).get_indexer(pd.Index(bundle.item_ids.astype(str)))
    back = np.concatenate([[0], np.where(back >= 0, back + 1, 0)])
    return back[topk]


def bundle_test_metrics(bundle: Bundle, stored: StoredSplit, interactions: pd.DataFrame,
                        cold: np.ndarray | None = None) -> dict:
    """``topk_metrics`` of ``bundle_test_topk``."""
    return topk_metrics(bundle_test_topk(bundle, stored, interactions), stored.split.test.targets,
                        stored.split.n_items, KS, cold)


class PromotionDecisionConfig(dg.Config):
    tolerance: float = Field(
        default=DEFAULT_TOLERANCE,
        description="Non-inferiority margin: promote when the lower bound of the 95% interval of the mean "
                    "per-customer NDCG@10 difference (challenger - champion, same test customers) is above -tolerance.",
    )


def _challenger_per_customer(warehouse: WarehouseResource, stored: StoredSplit, model: str) -> np.ndarray:
    """The challenger's NDCG@10 of each test customer (``model`` as evaluated), in the split's row order."""
    with warehouse.connect(read_only=True) as con:
        scores = con.execute(f"select customer, ndcg_10 from {CUSTOMER_METRICS_TABLE} where model = ? and "
                             "split = 'test' and variant = 'allowed'", [model]).df()
    by_customer = scores.set_index("customer")["ndcg_10"]
    return by_customer.reindex(np.asarray(stored.split.test.keys).astype(str)).to_numpy(dtype=np.float64)


def _versus_champion(client, champion: dict, stored: StoredSplit, warehouse: WarehouseResource,
                     challenger_version: int, challenger: np.ndarray) -> tuple[PairedComparison, str]:
    """The challenger against the champion re-scored on the same test customers, paired."""
    if champion["version"] == challenger_version:
        return paired_comparison(challenger, challenger), "the champion is this version"
    folder = registered_bundle(client, champion["version"], warehouse.paths)
    with warehouse.connect(read_only=True) as con:
        interactions = read_interactions(con)
    topk = bundle_test_topk(load_bundle(folder), stored, interactions)
    held = per_row_metrics(topk, stored.split.test.targets, (10,))[HEADLINE]
    return paired_comparison(challenger, held), "re-scored on the same test customers, paired"


PROMOTED_CHECK = "promoted"


@dg.asset(
    deps=[recommender_bundle], group_name="evaluation", kinds={"mlflow"}, pool="promotion_decision",
    # A refusal is a correct outcome, not a failed run; the warning makes it visible at a glance in the UI.
    check_specs=[dg.AssetCheckSpec(PROMOTED_CHECK, asset="promotion_decision",
                                   description="The new bundle became the champion (warns when the gate refused it).")],
)
def promotion_decision(
    context: AssetExecutionContext, config: PromotionDecisionConfig, warehouse: WarehouseResource, mlflow: MLflowResource,
    gate: PromotionGateResource, privacy: PrivacyResource,
) -> dg.MaterializeResult:
    """Moves the registry's ``champion`` alias to the new bundle, or records why not; one row per decision. A bundle
    it promotes ranks every customer first (``ml.ranked_answers``), so servers find its answers ready."""
    paths = warehouse.artifacts
    stored = load_split(paths.split_file)
    bundle_folder = paths.models_dir / "bundle"
    if not fit_on(bundle_folder, stored):
        raise dg.Failure("recommender_bundle was built on another split than user_sequences holds now.")
    version = json.loads((bundle_folder / TRACKING_FILE).read_text())["version"]
    table = _test_metrics(warehouse)
    model = evaluated_name(json.loads((bundle_folder / SPEC_FILE).read_text()).get("serves", RANKER))
    challenger = {name: float(value) for name, value in table.loc[model].items() if pd.notna(value)}
    others = table.loc[table.index != model, HEADLINE].dropna()
    best_baseline = (str(others.idxmax()), float(others.max())) if len(others) else ("none", float("-inf"))
    states = check_states(gate.check_keys(), context.instance.event_log_storage)
    failed = blocking_check_failures(states)
    client = mlflow.client()
    champion = current_champion(client)
    versus, how = None, ""
    if champion is not None:
        try:
            versus, how = _versus_champion(client, champion, stored, warehouse, version,
                                           _challenger_per_customer(warehouse, stored, model))
        except Exception as error:  # an unreadable champion must not block forever: fall back to its recorded metrics
            context.log.warning(f"Champion version {champion['version']} could not be re-scored ({error}); "
                                "comparing with the metrics it was promoted on.")
            versus, how = champion["metrics"], f"recorded at promotion (re-scoring failed: {error})"
    decision = decide_promotion(challenger, versus, best_baseline, failed, config.tolerance, HEADLINE)
    data_version = stored.info["data_version"]
    ranked = None
    if decision.promote:
        ranked = rank_ahead(client, version, warehouse, privacy.key())  # None: the servers rank it
        promote(client, version, challenger, data_version, reasons=decision.reasons)
    elif champion is None or champion["version"] != version:  # the serving champion keeps its promotion tags
        record_refusal(client, version, decision)
    after = current_champion(client)
    log_row = pd.DataFrame.from_records([{
        "decided_at": pd.Timestamp(time.time(), unit="s"), "dagster_run_id": context.run_id, "version": version,
        "promoted": decision.promote, "reasons": json.dumps(list(decision.reasons)), "serves": model,
        "challenger_ndcg_10": challenger.get(HEADLINE), "best_baseline": best_baseline[0],
        "best_baseline_ndcg_10": best_baseline[1],
        "previous_champion": None if champion is None else champion["version"],
        "previous_champion_ndcg_10": _champion_headline(versus),
        **_paired_columns(versus),
        "champion_after": None if after is None else after["version"], "failed_checks": json.dumps(failed),
        "data_version": data_version,
    }])
    with warehouse.connect() as con:
        _append_decision(con, log_row)
    verdict = "promoted" if decision.promote else "refused"
    reasons = "\n".join(f"- {reason}" for reason in decision.reasons)
    context.log.info(f"{BUNDLE_MODEL} version {version} {verdict}: " + " ".join(decision.reasons))
    return dg.MaterializeResult(
        metadata={
            "decision": verdict,
            "model_version": version,
            "registered_version": mlflow.model_version_link(BUNDLE_MODEL, version),
            "reasons": dg.MetadataValue.md(reasons),
            "serves": model,
            "ranked_ahead": ranked,
            "challenger_ndcg@10": challenger.get(HEADLINE, float("nan")),
            "best_baseline": best_baseline[0],
            "best_baseline_ndcg@10": best_baseline[1],
            "champion_before": "none" if champion is None else str(champion["version"]),
            "champion_compared": how or "no champion",
            "champion_after": "none" if after is None else str(after["version"]),
            **{name: value for name, value in _paired_columns(versus).items() if value is not None},
            "blocking_checks_seen": len(states),
            "failed_checks": dg.MetadataValue.json(failed),
            "table": PROMOTION_LOG,
        },
        check_results=[dg.AssetCheckResult(
            check_name=PROMOTED_CHECK, passed=decision.promote, severity=dg.AssetCheckSeverity.WARN,
            description=f"Version {version} {verdict}:\n{reasons}",
            metadata={"model_version": version, "champion_after": "none" if after is None else str(after["version"])},
        )],
    )


PROMOTIONS_COLUMNS = {
    "decided_at": "timestamp", "dagster_run_id": "varchar", "version": "integer", "promoted": "boolean",
    "reasons": "varchar", "serves": "varchar", "challenger_ndcg_10": "double",
    "best_baseline": "varchar", "best_baseline_ndcg_10": "double",  # the best other model evaluated
    "previous_champion": "integer", "previous_champion_ndcg_10": "double",
    # challenger - champion, per customer on the same test customers: mean, 95% interval, customers
    "champion_difference": "double", "champion_difference_ci_low": "double", "champion_difference_ci_high": "double",
    "compared_customers": "integer",
    "champion_after": "integer", "failed_checks": "varchar", "data_version": "varchar",
}


def _champion_headline(versus: PairedComparison | dict | None) -> float | None:
    if versus is None:
        return None
    return versus.reference_mean if isinstance(versus, PairedComparison) else versus.get(HEADLINE)


def _paired_columns(versus: PairedComparison | dict | None) -> dict[str, float | int | None]:
    if not isinstance(versus, PairedComparison):
        return {"champion_difference": None, "champion_difference_ci_low": None, "champion_difference_ci_high": None,
                "compared_customers": None}
    d = versus.difference
    return {"champion_difference": d.mean, "champion_difference_ci_low": d.low, "champion_difference_ci_high": d.high,
            "compared_customers": d.n}


def _append_decision(con, row: pd.DataFrame) -> None:
    """Decisions accumulate (one row each), unlike the other ml tables that each run replaces; a log written
    before a column existed gains it (empty for its older rows)."""
    con.execute("create schema if not exists ml")
    columns_sql = ", ".join(f"{name} {kind}" for name, kind in PROMOTIONS_COLUMNS.items())
    con.execute(f"create table if not exists {PROMOTION_LOG} ({columns_sql})")
    for name, kind in PROMOTIONS_COLUMNS.items():
        con.execute(f"alter table {PROMOTION_LOG} add column if not exists {name} {kind}")
    con.register("decision", row)
    columns = ", ".join(row.columns)
    con.execute(f"insert into {PROMOTION_LOG} ({columns}) select {columns} from decision")
    con.unregister("decision")


evaluation_assets = [evaluation_metrics, recommender_bundle, promotion_decision]
