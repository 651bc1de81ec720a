"""`make demo`: materialize every asset on the configured source (the synthetic shop by default) and summarize."""

from __future__ import annotations

import time

from orchestration.apps.runner import materialize
from orchestration.ingest.sources import source_kind
from orchestration.store.marts import format_summary, pipeline_summary
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
    print(_promotion_line(result))
    _print_recommendations(warehouse)
    print(f"Warehouse: {warehouse.path}  (open with: duckdb {warehouse.path})")
    print("Open the Dagster UI with: make ui  (then http://127.0.0.1:3000)")


def _model_line(result) -> str:
    model = result.asset_materializations_for_node("sasrec_model")[0].metadata
    ndcg = result.asset_materializations_for_node("evaluation_metrics")[0].metadata["test_ndcg@10"].value
    best = max((name for name in ndcg if name not in ("sasrec", "sasrec+ranker")), key=ndcg.get)
    return (f"Test NDCG@10: SASRec + ranker {ndcg['sasrec+ranker']:.4f}, SASRec {ndcg['sasrec']:.4f}, best baseline "
            f"{best} {ndcg[best]:.4f}; MLflow model {model['registered_model'].value} version {model['model_version'].value}")


def _promotion_line(result) -> str:
    decided = result.asset_materializations_for_node("promotion_decision")
    if not decided:
        return "Promotion: not decided (an upstream step or blocking check failed)."
    meta = {key: value.value for key, value in decided[0].metadata.items()}
    reasons = " ".join(line.removeprefix("- ") for line in str(meta["reasons"]).splitlines())
    return (f"Promotion: recsys-recommender version {meta['model_version']} {meta['decision']}; champion now "
            f"{meta['champion_after']}. {reasons}")


def _print_recommendations(warehouse, rows: int = 5) -> None:
    with warehouse.connect(read_only=True) as con:
        exists = con.execute("select count(*) from information_schema.tables where table_schema = 'ml' "
                             "and table_name = 'user_recommendations'").fetchone()[0]
        if not exists:
            print("No batch recommendations: there is no champion yet.")
            return
        sample = con.execute(
            "select user_id, rank, item_id, title, round(score, 3) as score, reason from ml.user_recommendations "
            "where user_id = (select min(user_id) from ml.user_recommendations) order by rank limit ?", [rows]
        ).df()
    print(f"Batch recommendations (ml.user_recommendations), customer {sample['user_id'].iloc[0]}:")
    print(sample.drop(columns=["user_id"]).to_string(index=False))
    print("Serve them with: .venv/bin/recsys serve  (then http://127.0.0.1:8000/docs)")


if __name__ == "__main__":
    main()
