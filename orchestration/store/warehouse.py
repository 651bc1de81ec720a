"""The DuckDB warehouse file under RECSYS_HOME, for any caller: Dagster's resource, the serving app, the CLI.

DuckDB allows one writer per file, so every connection is opened for one block and closed after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from orchestration.store.paths import ArtifactPaths, RecsysPaths, recsys_paths
from orchestration.store.reports import write_table


@dataclass(frozen=True)
class Warehouse:
    """The warehouse of the state folder ``home`` (None: ``$RECSYS_HOME`` or ./.recsys, read when used)."""

    home: str | None = None

    @property
    def paths(self) -> RecsysPaths:
        return recsys_paths(self.home).ensure()

    @property
    def path(self) -> Path:
        return self.paths.warehouse

    @property
    def artifacts(self) -> ArtifactPaths:
        """Where the model assets write their files."""
        return self.paths.artifacts

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        path = self.path
        # FileNotFoundError, which callers catch to say "run ingest first", rather than DuckDB's IOException.
        if read_only and not path.exists():
            raise FileNotFoundError(f"The warehouse {path} does not exist yet: materialize the ingest assets first.")
        con = duckdb.connect(str(path), read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def write_table(self, relation: str, frame: pd.DataFrame) -> int:
        """Replace ``relation`` (``schema.name``) with ``frame`` in one write; returns its row count."""
        with self.connect() as con:
            return write_table(con, relation, frame)

    def read_table(self, relation: str) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.sql(f"select * from {relation}").df()
