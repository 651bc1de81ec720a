"""The one Definitions object of the project (loaded by workspace.yaml and the CLI)."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.defs.automation import (
    DATA_JOB,
    RECOMMENDATIONS_JOB,
    RETRAIN_JOB,
    automation_schedules,
    automation_sensors,
)
from orchestration.defs.baselines import baseline_assets
from orchestration.defs.embeddings import item_embeddings, item_embeddings_expectations
from orchestration.defs.evaluation import evaluation_assets, promotion_decision
from orchestration.defs.ingest import raw_tables
from orchestration.defs.models import model_assets
from orchestration.defs.parallel import run_executor
from orchestration.defs.quality import mart_expectation_checks
from orchestration.defs.ranking import ranking_assets, ranking_checks
from orchestration.defs.resources import (
    DataSourceResource,
    MLflowResource,
    PrivacyResource,
    PromotionGateResource,
    TextEncoderResource,
    WarehouseResource,
)
from orchestration.defs.serving import serving_assets
from orchestration.defs.transforms import clean_data_version, dbt_executable, dbt_project, recsys_dbt_models


def _group_job(name: str, groups: tuple[str, ...], description: str):
    return dg.define_asset_job(name, selection=dg.AssetSelection.groups(*groups), description=description)


ingest_job = _group_job("ingest_job", ("ingest",), "Load new raw files into the warehouse.")
embeddings_job = _group_job("embeddings_job", ("embeddings",), "Embed new or changed item descriptions.")
transforms_job = _group_job(
    "transforms_job", ("transforms",),
    "Rebuild the dbt models, run every data-quality check and version the clean data.",
)
models_job = _group_job(
    "models_job", ("models",),
    "Split the purchases, train SASRec and the baselines, score every model's candidates.",
)
ranking_job = _group_job(
    "ranking_job", ("ranking",),
    "Candidates and features as of each cut-off, checked for leaks, and the LambdaMART re-ranker.",
)
# The sensors and schedules target these three by name (orchestration.defs.automation).
data_job = _group_job(
    DATA_JOB, ("ingest", "transforms", "embeddings"),
    "Load new files, rebuild and check the clean data, embed new item texts.",
)
retrain_job = _group_job(
    RETRAIN_JOB, ("embeddings", "models", "ranking", "evaluation"),
    "Retrain every model on the current clean data, evaluate, register the bundle and decide promotion.",
)
recommendations_job = _group_job(
    RECOMMENDATIONS_JOB, ("serving",), "Recompute every customer's recommendations from the current champion."
)

# `make demo` and `recsys materialize` run this job (a --select cuts it), so their runs are a job's history in
# the UI and can be re-executed from there.
all_assets_job = dg.define_asset_job(
    "all_assets_job", selection=dg.AssetSelection.all(),
    description="Every asset and its checks: ingest, clean, embed, train, evaluate, promote, recommend.",
)

ASSETS = [raw_tables, recsys_dbt_models, clean_data_version, item_embeddings, *model_assets, *baseline_assets, *ranking_assets,
          *evaluation_assets, *serving_assets]
ASSET_CHECKS = [*mart_expectation_checks, item_embeddings_expectations, *ranking_checks]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[all_assets_job, ingest_job, transforms_job, embeddings_job, models_job, ranking_job, data_job, retrain_job,
          recommendations_job],
    schedules=automation_schedules,
    sensors=automation_sensors,
    resources={
        "warehouse": WarehouseResource(),
        "data_source": DataSourceResource(),
        "privacy": PrivacyResource(),
        "text_encoder": TextEncoderResource(),
        "mlflow": MLflowResource(),
        "gate": PromotionGateResource.upstream_of(promotion_decision, ASSETS, ASSET_CHECKS),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
    },
    # In-process on the single-file warehouse (DuckDB accepts one writer), one process per step on a shared one.
    # Dagster fixes a code location's executor when it loads the definitions, so the setting is read then.
    executor=run_executor(),
)
