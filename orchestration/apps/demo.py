"""`make demo`: materialize every asset on the configured source (the synthetic shop by default) and summarize."""

from __future__ import annotations

import time

from orchestration.apps.runner import materialize
from orchestration.ingest.sources import source_kind
from orchestration.store.marts import format_summary, pipeline_summary
from orchestration.store.privacy import pseudonymization_key, pseudonymize
from orchestration.store.reports import table_exists
from orchestration.store.warehouse import Warehouse


def main() -> None:
    warehouse = Warehouse()
    source = source_kind()
    print(f"recsys demo: source={source}, state folder {warehouse.paths.home}")
    log_path = warehouse.paths.home / "logs" / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Materializing every asset (dbt's output goes to {log_path}) ...", flush=True)
    started = time.perf_counter()
    result = materialize(log_level="WARNING", stdout_log=log_path)
    elapsed = time.perf_counter() - started
    checks = [evaluation for evaluation in result.get_asset_check_evaluations()]
    failed = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed]
    with warehouse.connect(read_only=True) as con:
        print(format_summary(pipeline_summary(con)))
    print(f"Asset checks: {len(checks) - len(failed)} of {len(checks)} passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    print(f"Materialized {len(result.get_asset_materialization_events())} assets in {elapsed:.1f} s.")
    print(_model_line(result))
    print(interval_line(warehouse))
    print(_promotion_line(result))
    _print_recommendations(warehouse)
    if warehouse.lake is None:
        print(f"Warehouse: {warehouse.path}  (open with: duckdb {warehouse.path})")
    else:
        print(f"Warehouse: {warehouse.location}")
    print("Open the Dagster UI with: make ui  (then http://127.0.0.1:3000)")


def _model_line(result) -> str:
    model = result.asset_materializations_for_node("sasrec_model")[0].metadata
    evaluation = result.asset_materializations_for_node("evaluation_metrics")[0].metadata
    # evaluation_metrics plots "test/<model>/ndcg@10" for every model scored on the test rows.
    ndcg = {key.split("/")[1]: entry.value for key, entry in evaluation.items()
            if key.startswith("test/") and key.endswith("/ndcg@10")}
    best = max((name for name in ndcg if name not in ("sasrec", "sasrec+ranker")), key=ndcg.get)
    return (f"Test NDCG@10: SASRec + ranker {ndcg['sasrec+ranker']:.4f}, SASRec {ndcg['sasrec']:.4f}, best baseline "
            f"{best} {ndcg[best]:.4f}; MLflow model {model['registered_model'].value} version {model['model_version'].value}")


def interval_line(warehouse, model: str = "sasrec+ranker") -> str:
    """How much ``model``'s test NDCG@10 rests on: its 95% interval and the customers it averages over."""
    with warehouse.connect(read_only=True) as con:
        row = con.execute("select ci_low, ci_high, n_rows from ml.evaluation_metrics where model = ? and split = "
                          "'test' and variant = 'allowed' and segment = 'all' and metric = 'ndcg' and k = 10",
                          [model]).fetchone()
    if row is None:
        return f"No test NDCG@10 of {model} in ml.evaluation_metrics."
    return (f"{model}'s test NDCG@10 rests on {row[2]:,} customers: 95% interval {row[0]:.4f} to {row[1]:.4f} "
            "(bootstrap over customers).")


def _promotion_line(result) -> str:
    decided = result.asset_materializations_for_node("promotion_decision")
    if not decided:
        return "Promotion: not decided (an upstream step or blocking check failed)."
    meta = {key: value.value for key, value in decided[0].metadata.items()}
    reasons = " ".join(line.removeprefix("- ") for line in str(meta["reasons"]).splitlines())
    return (f"Promotion: recsys-recommender version {meta['model_version']} {meta['decision']}; champion now "
            f"{meta['champion_after']}. {reasons}")


def shop_customer_ids(con, pseudonyms: set[str], key: str) -> dict[str, str]:
    """The shop's own id of each pseudonymised customer in ``pseudonyms`` that the staged raw rows hold: the id
    a person types into `recsys recommend --user` or the page, which pseudonymise it again."""
    raw_ids: set[str] = set()
    for view, column in (("stg_raw__order_lines", "customer_id"), ("stg_raw__interactions", "user_id")):
        if table_exists(con, f"staging.{view}"):
            raw_ids.update(row[0] for row in con.execute(
                f"select distinct {column} from staging.{view} where {column} is not null").fetchall())
    return {pseudonym: raw for raw in sorted(raw_ids) if (pseudonym := pseudonymize(raw, key)) in pseudonyms}


def _print_recommendations(warehouse, rows: int = 5) -> None:
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, "ml.user_recommendations"):
            print("No batch recommendations: there is no champion yet.")
            return
        users = {row[0] for row in con.execute("select distinct user_id from ml.user_recommendations").fetchall()}
        shop_ids = shop_customer_ids(con, users, pseudonymization_key())
        user = min(shop_ids, key=shop_ids.get) if shop_ids else min(users)
        sample = con.execute(
            "select rank, item_id, title, round(score, 3) as score, reason from ml.user_recommendations "
            "where user_id = ? order by rank limit ?", [user, rows]
        ).df()
    shown = f"{shop_ids[user]} (pseudonymised {user})" if user in shop_ids else user
    print(f"Batch recommendations (ml.user_recommendations), customer {shown}:")
    print(sample.to_string(index=False))
    if user in shop_ids:
        print(f"The same from the champion, live: .venv/bin/recsys recommend --user {shop_ids[user]}")
    print("Serve them with: .venv/bin/recsys serve  (then http://127.0.0.1:8000 for the page, /docs for the API)")


if __name__ == "__main__":
    main()
