"""The dbt project as Dagster assets: staging, intermediate and marts, with dbt tests as asset checks."""


import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster import AssetExecutionContext
from dagster_dbt import (
    DagsterDbtProjectPreparer,
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_dbt.asset_utils import default_description_fn
from dagster_shared import record

from orchestration.defs.resources import DataSourceResource, PrivacyResource, WarehouseResource
from orchestration.ingest import ensure_raw_schema
from orchestration.store.marts import CLEAN_MARTS, MARTS_SCHEMA, mart_fingerprint, model_row_counts
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

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        # The YAML description only: dagster-dbt would append the model's SQL, which buries it in the UI.
        return default_description_fn(dbt_resource_props, display_raw_sql=False)


dbt_translator = RecsysDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


# pool: two runs must not rebuild the models at once (their tables would conflict in a shared lake).
@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=dbt_translator,
            pool="recsys_dbt_models")
def recsys_dbt_models(
    context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource, privacy: PrivacyResource,
    data_source: DataSourceResource,
) -> Iterator[Any]:
    """Clean, deduplicate and quarantine the raw rows; build fct_interactions, dim_items, dim_users, quarantine, reconciliation."""
    # dbt runs as a subprocess whose profile reads where the warehouse is from the environment.
    os.environ.update(warehouse.warehouse().dbt_environment())
    if privacy.key() == DEV_PSEUDONYMIZATION_KEY:
        context.log.warning(
            "Customer ids are pseudonymised with the public development key; set RECSYS_PSEUDONYMIZATION_KEY "
            "(or the privacy resource's config) to a secret for real data."
        )
    try:
        event_types = data_source.event_type_names()
    except ValueError as error:
        raise dg.Failure(str(error)) from None
    dbt_vars = json.dumps({"pseudonymization_key": privacy.key(), "extra_event_types": event_types})
    with warehouse.connect() as con:  # a warehouse older than a raw column (event_id) gains it before dbt reads it
        ensure_raw_schema(con)
    # dagster-dbt's fetch_row_counts() and fetch_column_metadata() would query through an in-process
    # dbt-duckdb connection that stays open and locks the warehouse for later steps; read with our own
    # short-lived one.
    events = list(dbt.cli(["build", "--vars", dbt_vars], context=context).stream())
    built = {_model_name(event) for event in events} - {""}
    with warehouse.connect(read_only=True) as con:
        row_counts = model_row_counts(con)
        column_types = _column_types(con)
        breakdowns = _breakdowns(con, built)
    for event in events:
        model = _model_name(event)
        if not model:
            yield event
            continue
        metadata = {**event.metadata, **breakdowns.get(model, {})}
        if model in row_counts:
            metadata["dagster/row_count"] = row_counts[model]
        if model in column_types:
            metadata["dagster/column_schema"] = _column_schema(context, event, column_types[model])
        yield event.with_metadata(metadata)


def _model_name(event: Any) -> str:
    """``fct_interactions`` for the output of model ``model.recsys.fct_interactions``; '' for other events."""
    if not isinstance(event, (dg.Output, dg.AssetMaterialization)):
        return ""
    unique_id = event.metadata.get("unique_id")
    return str(getattr(unique_id, "value", unique_id) or "").rsplit(".", 1)[-1]


# DuckDB's types are quoted in the annotations of this module, which Dagster needs without
# `from __future__ import annotations`: a DuckDB class held by a function's annotations outlives the duckdb module at
# interpreter exit (once torch is imported too), and DuckDB's bindings then print ~40 lines of "nanobind: leaked".
def _column_types(con: "duckdb.DuckDBPyConnection") -> dict[str, list[tuple[str, str]]]:
    """Model -> its (column, warehouse type) pairs in table order."""
    rows = con.execute(
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema in ('staging', 'intermediate', $marts) order by table_name, ordinal_position",
        {"marts": MARTS_SCHEMA},
    ).fetchall()
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in rows:
        columns.setdefault(table, []).append((column, data_type))
    return columns


def _column_schema(
    context: AssetExecutionContext, event: Any, types: list[tuple[str, str]]
) -> dg.TableSchema:
    """The built table's columns with their warehouse types, described as in the model's YAML."""
    if isinstance(event, dg.AssetMaterialization):
        key = event.asset_key
    else:
        key = context.asset_key_for_output(event.output_name)
    declared = context.assets_def.specs_by_key[key].metadata.get("dagster/column_schema")  # from the YAML
    descriptions = {column.name: column.description for column in (declared.columns if declared else [])}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, data_type, description=descriptions.get(name)) for name, data_type in types
        ]
    )


def _breakdowns(con: "duckdb.DuckDBPyConnection", built: set[str]) -> dict[str, dict[str, Any]]:
    """Model -> metadata: the rows of quarantine and of reconciliation by reason, as tables the UI shows."""
    metadata: dict[str, dict[str, Any]] = {}
    if "quarantine" in built:
        rows = con.execute(
            f"select source_table, reason, count(*) from {MARTS_SCHEMA}.quarantine group by all order by all"
        ).fetchall()
        metadata["quarantine"] = {
            "rows_by_reason": _table({"source_table": "string", "reason": "string", "rows": "int"}, rows)
        }
    if "reconciliation" in built:
        loads = con.execute(
            f"select target_table, kept_rows, duplicate_rows, rejected_by_reason, is_balanced "
            f"from {MARTS_SCHEMA}.reconciliation"
        ).fetchall()
        kept: Counter[str] = Counter()
        duplicate: Counter[str] = Counter()
        rejected: Counter[tuple[str, str]] = Counter()
        for table, kept_rows, duplicate_rows, rejected_by_reason, _ in loads:
            kept[table] += kept_rows
            duplicate[table] += duplicate_rows
            for reason, rows in json.loads(rejected_by_reason).items():
                rejected[(table, reason)] += rows
        # Per raw table these rows add up to its raw rows: kept + duplicate + each reason of rejection.
        books = []
        for table in sorted(kept):
            books += [(table, "kept", None, kept[table]), (table, "duplicate", None, duplicate[table])]
            books += [
                (table, "rejected", reason, n) for (of, reason), n in sorted(rejected.items()) if of == table
            ]
        columns = {"target_table": "string", "status": "string", "reason": "string", "rows": "int"}
        metadata["reconciliation"] = {
            "rows_by_reason": _table(columns, books),
            "loads": len(loads),
            "all_loads_balanced": all(balanced for *_, balanced in loads),
        }
    return metadata


def _table(columns: Mapping[str, str], rows: list[tuple]) -> dg.TableMetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, data_type) for name, data_type in columns.items()])
    return dg.MetadataValue.table([dg.TableRecord(dict(zip(columns, row))) for row in rows], schema=schema)


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
