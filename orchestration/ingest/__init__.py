"""Ingest: load shop exports untouched into DuckDB's ``raw`` schema (contract: docs/raw-contract.md).

Plain Python, no Dagster: every business value is stored as the text it had in the file, each file
is one transaction recorded in ``raw.loads``, and reloading a file already loaded is a no-op.
"""

from orchestration.ingest.errors import IngestError
from orchestration.ingest.loader import LoadResult, load_generic, load_interactions, load_items, load_online_retail, load_source
from orchestration.ingest.schema import ensure_raw_schema, raw_table_counts

__all__ = [
    "IngestError",
    "LoadResult",
    "ensure_raw_schema",
    "load_generic",
    "load_interactions",
    "load_items",
    "load_online_retail",
    "load_source",
    "raw_table_counts",
]
