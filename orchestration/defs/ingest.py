"""Raw tables: the configured shop's files, loaded untouched into the warehouse's ``raw`` schema."""


from collections.abc import Iterator

import dagster as dg
from dagster import AssetExecutionContext

from orchestration.defs.resources import DataSourceResource, WarehouseResource
from orchestration.ingest import raw_table_counts
from orchestration.ingest.sources import ingest_configured_source

RAW_TABLE_DESCRIPTIONS = {
    "loads": "One row per loaded file: content hash, row count, load order. Reloading the same file is a no-op.",
    "order_lines": "Order lines in the Online Retail layout (online_retail and synthetic sources), values as text.",
    "interactions": "Events in the generic layout (user_id, item_id, timestamp, ...), values as text.",
    "items": "Catalogue rows in the generic layout (item_id, title, description, ...), values as text.",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["raw", table], group_name="ingest", description=description, kinds={"duckdb"})
        for table, description in RAW_TABLE_DESCRIPTIONS.items()
    ],
    can_subset=False,
    pool="raw_tables",
)
def raw_tables(
    context: AssetExecutionContext, warehouse: WarehouseResource, data_source: DataSourceResource
) -> Iterator[dg.MaterializeResult]:
    """Load new files of the configured data source into raw.* (idempotent by file content hash)."""
    with warehouse.connect() as con:
        loads = ingest_configured_source(
            con, data_source.kind(), data_source.data_path(), warehouse.paths.sources_dir, data_source.synthetic_overrides()
        )
        counts = raw_table_counts(con)
    for load in loads:
        state = "already loaded, skipped" if load.skipped else f"loaded {load.row_count:,} rows"
        context.log.info(f"{load.source_file} -> raw.{load.target_table}: {state} (load {load.load_id})")
    for table in RAW_TABLE_DESCRIPTIONS:
        new_rows = sum(load.row_count for load in loads if load.target_table == table and not load.skipped)
        yield dg.MaterializeResult(
            asset_key=["raw", table],
            metadata={
                "dagster/row_count": counts[table],
                "new_rows": new_rows,
                "source": data_source.kind(),
                "warehouse": dg.MetadataValue.text(warehouse.warehouse().location),
            },
        )
