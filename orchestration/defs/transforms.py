"""The dbt project as Dagster assets: staging, intermediate and marts, with dbt tests as asset checks."""


import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import (
    DagsterDbtProjectPreparer,
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_shared import record

from orchestration.defs.resources import PrivacyResource, WarehouseResource
from orchestration.store.marts import CLEAN_MARTS, mart_fingerprint, model_row_counts
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY

TRANSFORMS_DIR = Path(__file__).resolve().parents[2] / "transforms"



def dbt_executable() -> str:
    """The dbt installed beside this interpreter, so `.venv/bin/python` works without an activated venv."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


class InterpreterDbtPreparer(DagsterDbtProjectPreparer):
    """`dagster dev`'s manifest refresh, run with ``dbt_executable()``: dagster-dbt's own preparer looks dbt up
    on PATH, which `make ui` does not change, so without an activated venv the code location failed to load."""

    def prepare(self, project: DbtProject) -> None:
        cli = DbtCliResource(project_dir=project, dbt_executable=dbt_executable())
        cli.cli(["parse", "--quiet"], target_path=project.target_path).wait()


# DbtProject's constructor always builds the default preparer; ``replace`` (dagster's record API, which the
# record type is) swaps ours in without going through that constructor again.
dbt_project = record.replace(DbtProject(project_dir=TRANSFORMS_DIR, profiles_dir=TRANSFORMS_DIR),
                             preparer=InterpreterDbtPreparer())
dbt_project.prepare_if_dev()


class RecsysDbtTranslator(DagsterDbtTranslator):
    """Every dbt model joins the ``transforms`` group; raw sources keep their ``raw/<table>`` keys."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "transforms"


dbt_translator = RecsysDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=dbt_translator)
def recsys_dbt_models(
    context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource, privacy: PrivacyResource
) -> Iterator[Any]:
    """Clean, deduplicate and quarantine the raw rows; build fct_interactions, dim_items, dim_users, quarantine, reconciliation."""
    # dbt runs as a subprocess whose profile reads the warehouse path from the environment.
    os.environ["RECSYS_WAREHOUSE"] = str(warehouse.path)
    if privacy.key() == DEV_PSEUDONYMIZATION_KEY:
        context.log.warning(
            "Customer ids are pseudonymised with the public development key; set RECSYS_PSEUDONYMIZATION_KEY "
            "(or the privacy resource's config) to a secret for real data."
        )
    dbt_vars = json.dumps({"pseudonymization_key": privacy.key()})
    # dagster-dbt's fetch_row_counts() would query through an in-process dbt-duckdb connection that stays
    # open and locks the warehouse for later steps; count with our own short-lived connection instead.
    events = list(dbt.cli(["build", "--vars", dbt_vars], context=context).stream())
    with warehouse.connect(read_only=True) as con:
        row_counts = model_row_counts(con)
    for event in events:
        model = _model_name(event)
        yield event.with_metadata({**event.metadata, "dagster/row_count": row_counts[model]}) if model in row_counts else event


def _model_name(event: Any) -> str:
    """``fct_interactions`` for the output of model ``model.recsys.fct_interactions``; '' for other events."""
    if not isinstance(event, (dg.Output, dg.AssetMaterialization)):
        return ""
    unique_id = event.metadata.get("unique_id")
    return str(getattr(unique_id, "value", unique_id) or "").rsplit(".", 1)[-1]


@dg.asset(
    deps=[dg.AssetKey([table]) for table in CLEAN_MARTS],
    group_name="transforms",
    kinds={"duckdb"},
)
def clean_data_version(context: AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Version id of the clean marts (row counts + content hash); models are tagged with the data they saw."""
    with warehouse.connect(read_only=True) as con:
        fingerprint = mart_fingerprint(con)
    context.log.info(f"Clean data version {fingerprint['version']}")
    return dg.MaterializeResult(
        metadata={
            "version": fingerprint["version"],
            **{f"{table}_rows": info["rows"] for table, info in fingerprint["tables"].items()},
            "fingerprint": dg.MetadataValue.json(fingerprint),
        }
    )
