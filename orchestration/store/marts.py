"""Plain helpers over the marts: a content fingerprint and the summary the demo and CLI print."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import duckdb
import pandas as pd

MARTS_SCHEMA = "marts"
CLEAN_MARTS = ("fct_interactions", "dim_items", "dim_users")
INTERACTION_COLUMNS = ("user_id", "item_id", "event_type", "occurred_at", "quantity", "unit_price", "basket_id",
                       "source_row")
# The purchases the sequential models split and learn from: customers' only. An anonymous visitor's session
# (is_anonymous) is one visit, never a returning customer, so it would only pad the split with one-basket "customers";
# its events still count in every behaviour and item-level read.
KNOWN_CUSTOMERS = "not is_anonymous"
KNOWN_CUSTOMER_PURCHASES = f"event_type = 'purchase' and {KNOWN_CUSTOMERS}"


def read_interactions(con: duckdb.DuckDBPyConnection, purchases_of_known_customers: bool = False,
                      of_known_customers: bool = False) -> pd.DataFrame:
    """``marts.fct_interactions`` in its one fixed row order (time, then id), so float sums over it repeat exactly;
    with ``of_known_customers`` only ``KNOWN_CUSTOMERS``' events, with ``purchases_of_known_customers`` only
    ``KNOWN_CUSTOMER_PURCHASES``."""
    where = (f"where {KNOWN_CUSTOMER_PURCHASES} " if purchases_of_known_customers
             else f"where {KNOWN_CUSTOMERS} " if of_known_customers else "")
    return con.execute(
        f"select {', '.join(INTERACTION_COLUMNS)} from {MARTS_SCHEMA}.fct_interactions "
        f"{where}order by occurred_at, interaction_id"
    ).df()


def mart_fingerprint(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...] = CLEAN_MARTS) -> dict[str, Any]:
    """Row counts and an order-independent content hash per mart, plus one version id over all of them.

    The same clean data gives the same version, whatever order dbt wrote the rows in, so a model trained
    on it can be tagged with the data it saw.
    """
    per_table = {}
    for table in tables:
        # fetchall, not fetchone: the warehouse's connections refuse new work while a result is unfinished.
        ((rows, content),) = con.execute(
            f"select count(*), coalesce(bit_xor(hash(t)), 0) from {MARTS_SCHEMA}.{table} as t"
        ).fetchall()
        per_table[table] = {"rows": int(rows), "content_hash": f"{int(content):016x}"}
    digest = hashlib.sha256(json.dumps(per_table, sort_keys=True).encode()).hexdigest()[:16]
    return {"version": digest, "tables": per_table}


def model_row_counts(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...] = ("intermediate", MARTS_SCHEMA)) -> dict[str, int]:
    """Rows per dbt-built table (views are skipped: counting them would re-run their query)."""
    tables = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_schema in (select unnest($schemas))",
        {"schemas": list(schemas)},
    ).fetchall()
    return {name: con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0] for schema, name in tables}


def pipeline_summary(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """What the warehouse holds now: raw rows, the reconciliation per load, quarantine reasons and mart sizes."""
    reconciliation = con.execute(
        f"""select load_seq, source_file, target_table, raw_rows, kept_rows, duplicate_rows, rejected_rows, is_balanced
            from {MARTS_SCHEMA}.reconciliation order by load_seq"""
    ).fetchall()
    reasons = con.execute(
        f"select reason, count(*) from {MARTS_SCHEMA}.quarantine group by reason order by count(*) desc, reason"
    ).fetchall()
    marts = {table: con.execute(f"select count(*) from {MARTS_SCHEMA}.{table}").fetchone()[0] for table in CLEAN_MARTS}
    return {
        "loads": [
            dict(zip(("load_seq", "source_file", "target_table", "raw_rows", "kept_rows", "duplicate_rows",
                      "rejected_rows", "is_balanced"), row))
            for row in reconciliation
        ],
        "quarantine_by_reason": dict(reasons),
        "marts": marts,
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = ["Loads (raw_rows = kept + duplicates + rejected):"]
    header = f"  {'#':>2}  {'table':<12} {'raw':>10} {'kept':>10} {'dupes':>8} {'rejected':>9}  balanced  file"
    lines.append(header)
    for load in summary["loads"]:
        lines.append(
            f"  {load['load_seq']:>2}  {load['target_table']:<12} {load['raw_rows']:>10,} {load['kept_rows']:>10,} "
            f"{load['duplicate_rows']:>8,} {load['rejected_rows']:>9,}  {'yes' if load['is_balanced'] else 'NO':<8}  "
            f"{load['source_file']}"
        )
    lines.append("Quarantine by reason:")
    lines += [f"  {reason:<26} {count:>10,}" for reason, count in summary["quarantine_by_reason"].items()] or ["  (empty)"]
    lines.append("Marts:")
    lines += [f"  marts.{table:<20} {rows:>10,} rows" for table, rows in summary["marts"].items()]
    return "\n".join(lines)
