"""Schedules and sensors: each gathers plain values and acts on a pure decision made elsewhere.

The landing sensor lists the landing folder and asks ``orchestration.ingest.landing`` what is new; the retrain
and champion sensors ask ``orchestration.registry.retraining``. Decisions return frozen dataclasses with a
readable ``reason``, which becomes the run's trigger or the skip reason. Jobs are targeted by name;
``definitions.py`` defines them.

Settings come from the environment when a sensor is evaluated, never at import:

- ``RECSYS_LANDING_SOURCE``: ``auto`` (default), ``online_retail`` or ``generic``; see ``landing_kind``.
- ``RECSYS_LANDING_SETTLE_SECONDS``: 60; a landed entry must be unchanged this long before it is ingested.
- ``RECSYS_RETRAIN_MIN_NEW_SHARE``: 0.1; retrain when new purchases exceed this share of those trained on.
- ``RECSYS_RETRAIN_MAX_DRIFT``: 0.2; retrain when item-popularity drift (total variation) exceeds this.

No ``from __future__ import annotations``: Dagster reads the sensors' resource annotations at definition time.
"""

import os
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from orchestration.defs.resources import MLflowResource, WarehouseResource
from orchestration.ingest.landing import (
    DEFAULT_SETTLE_SECONDS,
    LandingFile,
    is_ignored_name,
    landing_kind,
    list_landing,
    new_landing_files,
)
from orchestration.registry.promotion import BUNDLE_MODEL, current_champion
from orchestration.registry.retraining import (
    RetrainSettings,
    champion_moved,
    retrain_decision,
    retrain_inputs,
)
from orchestration.store.paths import env_float
from orchestration.store.warehouse import WarehouseBusyError
from recmodels.splits import load_split

DATA_JOB = "data_job"  # ingest + transforms + item embeddings
RETRAIN_JOB = "retrain_job"  # embeddings, models, ranking, evaluation and promotion
RECOMMENDATIONS_JOB = "recommendations_job"  # the batch recommendations of the champion

# Every sensor and schedule starts STOPPED: a fresh `dagster dev` on a laptop must not start ingesting or
# training (minutes of CPU/GPU, and the warehouse's single write lock) until someone opts in, in the UI or
# with `dagster schedule start` / `dagster sensor start`; the instance remembers that choice across restarts.
STOPPED_SCHEDULE = dg.DefaultScheduleStatus.STOPPED
STOPPED_SENSOR = dg.DefaultSensorStatus.STOPPED


# ---- landing folder: ingest what is new


def landing_run_request(entry: LandingFile, path: Path, kind: str) -> dg.RunRequest:
    """A data_job run that ingests ``path`` as ``kind``; one run key per (name, size, mtime)."""
    return dg.RunRequest(
        run_key=f"landing:{entry.name}:{entry.size}:{entry.mtime:.6f}",
        run_config={"resources": {"data_source": {"config": {"source": kind, "data": str(path)}}}},
        tags={"recsys/trigger": "landing_sensor", "recsys/source": kind},
    )


@dg.sensor(job_name=DATA_JOB, minimum_interval_seconds=30, default_status=STOPPED_SENSOR)
def landing_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
    """Ingest each file or folder dropped into RECSYS_HOME/landing once settled: one data_job run each."""
    landing = warehouse.paths.landing_dir
    if not landing.is_dir():
        reason = f"No landing folder: drop shop exports into {landing}."
        return dg.SensorResult(skip_reason=reason, cursor=context.cursor)
    setting = os.environ.get("RECSYS_LANDING_SOURCE")
    settle = env_float("RECSYS_LANDING_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS)
    kinds, listing = {}, []
    for entry, members in list_landing(landing):
        kind = landing_kind(entry.name, members, setting)
        if kind is None:
            if not is_ignored_name(entry.name):
                context.log.info(f"Landing: {entry.name} is not something ingest reads; left alone.")
            continue
        kinds[entry.name] = kind
        listing.append(entry)
    scan = new_landing_files(listing, context.cursor, now=time.time(), settle_seconds=settle)
    if not scan.new_files:
        return dg.SensorResult(skip_reason=scan.reason, cursor=scan.cursor)
    context.log.info(scan.reason)
    requests = [landing_run_request(e, landing / e.name, kinds[e.name]) for e in scan.new_files]
    return dg.SensorResult(run_requests=requests, cursor=scan.cursor)


# ---- retraining: enough new data, or drifted popularity


@dg.sensor(job_name=RETRAIN_JOB, minimum_interval_seconds=600, default_status=STOPPED_SENSOR)
def retrain_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.RunRequest | dg.SkipReason:
    """Retrain when enough clean purchases arrived since the last training, or item popularity drifted."""
    settings = RetrainSettings.from_env()
    split_file = warehouse.artifacts.split_file
    info = load_split(split_file).info if split_file.exists() else None
    last_event = None if info is None else pd.Timestamp(info["last_event"]).to_pydatetime()
    try:
        with warehouse.connect(read_only=True, wait=False) as con:
            inputs = retrain_inputs(con, last_event, settings)
    except FileNotFoundError:
        return dg.SkipReason(f"No warehouse at {warehouse.warehouse().location} yet: run {DATA_JOB} first.")
    except duckdb.CatalogException:
        return dg.SkipReason(f"The warehouse has no marts.fct_interactions yet: run {DATA_JOB} first.")
    except (duckdb.OperationalError, WarehouseBusyError) as error:  # a run holds DuckDB's write lock: next tick
        return dg.SkipReason(f"The warehouse is busy (a run is writing to it); will look again. {error}")
    decision = retrain_decision(
        inputs.new_rows, inputs.trained_rows, settings.min_new_share, inputs.drift, settings.max_drift
    )
    if not decision.retrain:
        return dg.SkipReason(decision.reason)
    context.log.info(decision.reason)
    trained_on = "untrained" if info is None else info.get("data_version", "unknown")
    latest = "none" if inputs.latest is None else pd.Timestamp(inputs.latest).isoformat()
    # One run per (trained data, current data): a failed retrain is not relaunched each tick on the same data.
    return dg.RunRequest(
        run_key=f"retrain:{trained_on}:{inputs.trained_rows}:{inputs.new_rows}:{latest}",
        tags={"recsys/trigger": "retrain_sensor", "recsys/new_rows": str(inputs.new_rows)},
    )


# ---- champion alias: refresh recommendations when it moves


@dg.sensor(job_name=RECOMMENDATIONS_JOB, minimum_interval_seconds=60, default_status=STOPPED_SENSOR)
def champion_sensor(context: dg.SensorEvaluationContext, mlflow: MLflowResource) -> dg.SensorResult:
    """Refresh the batch recommendations whenever the champion alias moves (a promotion or a rollback)."""
    from mlflow.exceptions import MlflowException

    try:
        champion = current_champion(mlflow.client(), BUNDLE_MODEL)
    except MlflowException as error:
        reason = f"Could not read the model registry: {error}"
        return dg.SensorResult(skip_reason=reason, cursor=context.cursor)
    decision = champion_moved(context.cursor, None if champion is None else champion["version"])
    if not decision.moved:
        return dg.SensorResult(skip_reason=decision.reason, cursor=decision.cursor)
    context.log.info(decision.reason)
    # No run key: a rollback returns to a version seen before, so no key made of versions stays unique; the
    # cursor, committed together with the request, is what keeps a move from being acted on twice.
    tags = {"recsys/trigger": "champion_sensor", "recsys/champion_version": decision.cursor}
    request = dg.RunRequest(tags=tags)
    return dg.SensorResult(run_requests=[request], cursor=decision.cursor)


# ---- schedules

daily_data_schedule = dg.ScheduleDefinition(
    name="daily_data_schedule",
    cron_schedule="0 2 * * *",  # 02:00 UTC, after shops' nightly exports
    job_name=DATA_JOB,
    execution_timezone="UTC",
    default_status=STOPPED_SCHEDULE,
    description="Refresh the configured data source (a no-op for files already ingested) and its embeddings.",
)
weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain_schedule",
    cron_schedule="0 4 * * 1",  # Mondays 04:00 UTC, two hours after that day's data refresh starts
    job_name=RETRAIN_JOB,
    execution_timezone="UTC",
    default_status=STOPPED_SCHEDULE,
    description="Retrain, evaluate and gate the models every week, whatever the sensors decided.",
)

automation_schedules = [daily_data_schedule, weekly_retrain_schedule]
automation_sensors = [landing_sensor, retrain_sensor, champion_sensor]
