"""The one Definitions object of the project (loaded by workspace.yaml and the CLI)."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.assets.embeddings import item_embeddings, item_embeddings_expectations
from orchestration.assets.evaluation import evaluation_assets
from orchestration.assets.ingest import raw_tables
from orchestration.assets.models import model_assets
from orchestration.assets.quality import mart_expectation_checks
from orchestration.assets.ranking import ranking_assets, ranking_checks
from orchestration.assets.serving import serving_assets
from orchestration.assets.transforms import clean_data_version, dbt_executable, dbt_project, recsys_dbt_models
from orchestration.automation import automation_schedules, automation_sensors
from orchestration.resources import DataSourceResource, PrivacyResource, TextEncoderResource, WarehouseResource
from orchestration.tracking import MLflowResource

ingest_job = dg.define_asset_job(
    "ingest_job", selection=dg.AssetSelection.groups("ingest"), description="Load new raw files into the warehouse."
)
embeddings_job = dg.define_asset_job(
    "embeddings_job",
    selection=dg.AssetSelection.groups("embeddings"),
    description="Embed new or changed item descriptions.",
)
transforms_job = dg.define_asset_job(
    "transforms_job",
    selection=dg.AssetSelection.groups("transforms"),
    description="Rebuild the dbt models, run every data-quality check and version the clean data.",
)
models_job = dg.define_asset_job(
    "models_job",
    selection=dg.AssetSelection.groups("models"),
    description="Split the purchases, train SASRec and the baselines, score candidates and evaluate every model.",
)

ranking_job = dg.define_asset_job(
    "ranking_job",
    selection=dg.AssetSelection.groups("ranking"),
    description="Candidates and features as of each cut-off, checked for leaks, and the LambdaMART re-ranker.",
)

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.groups("ingest", "transforms", "embeddings"),
    description="Load new files, rebuild and check the clean data, embed new item texts.",
)
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.groups("embeddings", "models", "ranking", "evaluation"),
    description="Retrain every model on the current clean data, evaluate, register the bundle and decide promotion.",
)
recommendations_job = dg.define_asset_job(
    "recommendations_job",
    selection=dg.AssetSelection.groups("serving"),
    description="Recompute every customer's recommendations from the current champion.",
)

defs = dg.Definitions(
    assets=[raw_tables, recsys_dbt_models, clean_data_version, item_embeddings, *model_assets, *ranking_assets,
            *evaluation_assets, *serving_assets],
    asset_checks=[*mart_expectation_checks, item_embeddings_expectations, *ranking_checks],
    jobs=[ingest_job, transforms_job, embeddings_job, models_job, ranking_job, data_job, retrain_job,
          recommendations_job],
    schedules=automation_schedules,
    sensors=automation_sensors,
    resources={
        "warehouse": WarehouseResource(),
        "data_source": DataSourceResource(),
        "privacy": PrivacyResource(),
        "text_encoder": TextEncoderResource(),
        "mlflow": MLflowResource(),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
    },
    # DuckDB accepts one writer: every step of a run executes in one process, one after another.
    executor=dg.in_process_executor,
)
