"""`make demo`: materialize every asset on the configured source (the synthetic shop by default) and summarize."""

from __future__ import annotations

import time

from orchestration.marts import format_summary, pipeline_summary
from orchestration.resources import DataSourceResource, WarehouseResource
from orchestration.runner import materialize


def main() -> None:
    warehouse = WarehouseResource()
    source = DataSourceResource().kind()
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
    print(f"Warehouse: {warehouse.path}  (open with: duckdb {warehouse.path})")
    print("Open the Dagster UI with: make ui  (then http://127.0.0.1:3000)")


def _model_line(result) -> str:
    model = result.asset_materializations_for_node("sasrec_model")[0].metadata
    baselines = result.asset_materializations_for_node("evaluation_metrics")[0].metadata["test_ndcg@10"].value
    best = max((name for name in baselines if name != "sasrec"), key=baselines.get)
    return (f"SASRec: test NDCG@10 {model['test_ndcg@10'].value:.4f} (best baseline {best} {baselines[best]:.4f}); "
            f"MLflow model {model['registered_model'].value} version {model['model_version'].value}")


if __name__ == "__main__":
    main()
