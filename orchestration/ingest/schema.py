"""The raw tables of docs/raw-contract.md, and how a file's header maps onto them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb

from orchestration.ingest.errors import IngestError
from orchestration.store.lake import in_lake

SCHEMA = "raw"


@dataclass(frozen=True)
class RawTable:
    """One raw data table: its business columns (all VARCHAR, in table order) and accepted header names."""

    name: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    # Header names accepted besides the column's own name (matching ignores case, spaces and underscores).
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Excel sources: the workbook sheet a row came from.
    has_sheet: bool = False

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"


_ORDER_LINE_COLUMNS = (
    "invoice",
    "stock_code",
    "description",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
    "country",
)
ORDER_LINES = RawTable(
    "order_lines",
    columns=_ORDER_LINE_COLUMNS,
    required=_ORDER_LINE_COLUMNS,
    # Online Retail says InvoiceNo/UnitPrice/CustomerID; Online Retail II says Invoice/Price/Customer ID.
    aliases={"invoice": ("InvoiceNo",), "unit_price": ("Price",)},
    has_sheet=True,
)
INTERACTIONS = RawTable(
    "interactions",
    # event_id came last, after the first release: warehouses created before gain it in ensure_raw_schema.
    columns=("user_id", "item_id", "timestamp", "event_type", "quantity", "price", "session_id", "event_id"),
    required=("user_id", "item_id", "timestamp"),
)
ITEMS = RawTable(
    "items",
    columns=("item_id", "title", "description", "category", "brand", "price"),
    required=("item_id",),
)
DATA_TABLES = (ORDER_LINES, INTERACTIONS, ITEMS)

# A file is loaded once: the loader looks its digest up first, and in the embedded file the key refuses a second
# copy. DuckLake has no key constraints; there, the ingest step's concurrency pool keeps two loads apart.
_LOADS_DDL = """
CREATE TABLE IF NOT EXISTS raw.loads (
    load_id VARCHAR{key},
    source_kind VARCHAR,
    target_table VARCHAR,
    source_file VARCHAR,
    content_sha256 VARCHAR,
    row_count BIGINT,
    loaded_at TIMESTAMP,
    load_seq BIGINT
)
"""


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema ``raw`` and all four tables if missing, so dbt sources never point at absent tables; add
    the business columns a table created by an earlier release lacks (NULL in its existing rows)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(_LOADS_DDL.format(key="" if in_lake(con) else " PRIMARY KEY"))
    for table in DATA_TABLES:
        business = ", ".join(f"{column} VARCHAR" for column in table.columns)
        sheet = "sheet VARCHAR, " if table.has_sheet else ""
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {table.qualified} (load_id VARCHAR, source_file VARCHAR, "
            f"source_row BIGINT, {sheet}{business}, malformed_line VARCHAR)"
        )
        present = {row[0] for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?",
            [SCHEMA, table.name]).fetchall()}
        for column in (c for c in table.columns if c not in present):
            con.execute(f"ALTER TABLE {table.qualified} ADD COLUMN IF NOT EXISTS {column} VARCHAR")


def raw_table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows in each raw table (``loads`` included), keyed by bare table name; creates missing tables."""
    ensure_raw_schema(con)
    return {
        name: con.execute(f"SELECT count(*) FROM {SCHEMA}.{name}").fetchone()[0]
        for name in ("loads", *(table.name for table in DATA_TABLES))
    }


def _normalized(name: str) -> str:
    return re.sub(r"[\s_]+", "", name).lower()


def map_columns(header: Sequence[str], table: RawTable, where: str) -> dict[str, int]:
    """Position of each known column in ``header``; raise naming what is missing and what was found.

    ``where`` names the file (and sheet) for the error message. Unknown header names are ignored.
    """
    lookup = {
        _normalized(name): column
        for column in table.columns
        for name in (column, *table.aliases.get(column, ()))
    }
    positions: dict[str, int] = {}
    for position, name in enumerate(header):
        column = lookup.get(_normalized(name))
        if column is None:
            continue
        if column in positions:
            raise IngestError(
                f"Cannot load {where}: the columns {header[positions[column]]!r} and {name!r} both map to "
                f"{column!r}, so it is unclear which one to use. "
                "Expected at most one of them; remove or rename the other."
            )
        positions[column] = position
    missing = [column for column in table.required if column not in positions]
    if missing:
        wanted = ", ".join(
            column + (f" (or {' / '.join(table.aliases[column])})" if column in table.aliases else "")
            for column in missing
        )
        found = ", ".join(repr(name) for name in header) or "none"
        raise IngestError(
            f"Cannot load {where} into {table.qualified}: required column(s) missing: {wanted}. "
            f"The header has: {found}. Expected the columns {', '.join(table.required)} "
            "(names match ignoring case, spaces and underscores; extra columns are ignored)."
        )
    return positions
