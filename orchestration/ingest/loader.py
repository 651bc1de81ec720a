"""Load source files into ``raw.*``: one transaction per file, idempotent by content hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb

from orchestration.ingest.errors import IngestError
from orchestration.ingest.readers import STAGE, file_suffix, stage_file, supported_suffixes
from orchestration.ingest.schema import INTERACTIONS, ITEMS, ORDER_LINES, RawTable, ensure_raw_schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """What happened to one file. ``skipped``: the same content was already in the target table."""

    load_id: str
    target_table: str  # bare raw table name, e.g. "order_lines"
    source_file: str  # absolute path
    row_count: int  # rows of this load (for a skipped file: of the earlier load)
    skipped: bool


def load_online_retail(
    con: duckdb.DuckDBPyConnection, path: Path, source_kind: str = "online_retail"
) -> list[LoadResult]:
    """Load an Online Retail (I or II) export, or every such file in a folder, into ``raw.order_lines``."""
    path = Path(path)
    ensure_raw_schema(con)
    if not path.is_dir():
        return [_load_file(con, path, ORDER_LINES, source_kind)]
    files = [
        file
        for file in sorted(path.iterdir())
        # Skip hidden files and Excel's "~$name.xlsx" lock files, which sit beside an open workbook.
        if file.is_file() and file_suffix(file) and not file.name.startswith((".", "~$"))
    ]
    if not files:
        raise IngestError(
            f"Cannot load {path}: the folder holds no Online Retail file. "
            f"Expected files ending in {', '.join(supported_suffixes(ORDER_LINES))}."
        )
    return [_load_file(con, file, ORDER_LINES, source_kind) for file in files]


def load_items(con: duckdb.DuckDBPyConnection, path: Path, source_kind: str) -> LoadResult:
    """Load a catalogue file in the generic layout (``item_id``, optional attributes) into ``raw.items``."""
    ensure_raw_schema(con)
    return _load_file(con, Path(path), ITEMS, source_kind)


def load_interactions(con: duckdb.DuckDBPyConnection, path: Path, source_kind: str) -> LoadResult:
    """Load an events file in the generic layout (``user_id``, ``item_id``, ``timestamp``, ...) into
    ``raw.interactions``."""
    ensure_raw_schema(con)
    return _load_file(con, Path(path), INTERACTIONS, source_kind)


def load_generic(con: duckdb.DuckDBPyConnection, directory: Path) -> list[LoadResult]:
    """Load a folder holding ``interactions.*`` (required) and ``items.*`` (optional)."""
    directory = Path(directory)
    ensure_raw_schema(con)
    if not directory.is_dir():
        problem = "it is a file" if directory.exists() else "the folder does not exist"
        raise IngestError(
            f"Cannot load {directory}: {problem}. Expected a folder holding interactions.csv "
            "(or .csv.gz / .parquet) and optionally items.csv (or .csv.gz / .parquet)."
        )
    interactions = _named_file(directory, "interactions", INTERACTIONS)
    if interactions is None:
        found = ", ".join(sorted(entry.name for entry in directory.iterdir())) or "nothing"
        raise IngestError(
            f"Cannot load {directory}: the folder has no interactions file (it holds: {found}). "
            f"Expected one of {', '.join('interactions' + s for s in supported_suffixes(INTERACTIONS))}."
        )
    results = [_load_file(con, interactions, INTERACTIONS, "generic")]
    if (items := _named_file(directory, "items", ITEMS)) is not None:
        results.append(_load_file(con, items, ITEMS, "generic"))
    return results


def load_source(con: duckdb.DuckDBPyConnection, kind: str, path: Path) -> list[LoadResult]:
    """Load a user's data source: ``online_retail`` (file or folder) or ``generic`` (folder)."""
    loaders = {"online_retail": load_online_retail, "generic": load_generic}
    if kind not in loaders:
        raise IngestError(
            f"Cannot load {path}: unknown data source kind {kind!r}. Expected one of {', '.join(loaders)} "
            "(synthetic data is generated, not loaded from a path)."
        )
    return loaders[kind](con, Path(path))


def _named_file(directory: Path, stem: str, table: RawTable) -> Path | None:
    """The one ``<stem>.<supported suffix>`` file in ``directory`` (names compared case-insensitively)."""
    names = {stem + suffix for suffix in supported_suffixes(table)}
    matches = sorted(
        entry for entry in directory.iterdir() if entry.is_file() and entry.name.lower() in names
    )
    if len(matches) > 1:
        raise IngestError(
            f"Cannot load {directory}: it holds {len(matches)} {stem} files "
            f"({', '.join(m.name for m in matches)}), so it is unclear which one to load. "
            f"Expected exactly one {stem} file; move the others away."
        )
    return matches[0] if matches else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_file(con: duckdb.DuckDBPyConnection, path: Path, table: RawTable, source_kind: str) -> LoadResult:
    """Load one file into ``table``, unless the same content is already there."""
    if not path.is_file():
        problem = "it is a folder" if path.is_dir() else "the file does not exist"
        raise IngestError(
            f"Cannot load {path}: {problem}. "
            f"Expected a file ending in {', '.join(supported_suffixes(table))}."
        )
    source_file = str(path.resolve())
    content_sha256 = _sha256(path)
    load_id = hashlib.sha256(f"{content_sha256}|{table.name}".encode()).hexdigest()[:16]
    earlier = con.execute(
        "SELECT row_count FROM raw.loads WHERE content_sha256 = ? AND target_table = ?",
        [content_sha256, table.name],
    ).fetchone()
    if earlier is not None:
        return LoadResult(load_id, table.name, source_file, earlier[0], skipped=True)
    try:
        row_count = stage_file(con, path, table)
        malformed = con.execute(f"SELECT count(malformed_line) FROM {STAGE}").fetchone()[0]
        if malformed:
            log.warning(
                "%s: %d of %d lines could not be split into fields; kept in malformed_line",
                path,
                malformed,
                row_count,
            )
        _commit_load(con, table, load_id, source_kind, source_file, content_sha256, row_count)
    except IngestError:
        raise
    except Exception as exc:
        # Readers sit on DuckDB, zlib, openpyxl and XML parsers whose errors share no base class; whatever
        # they raise, the caller gets one IngestError naming the file, and the raw tables are unchanged.
        detail = (str(exc).strip().splitlines() or ["no details"])[0][:200]
        raise IngestError(
            f"Cannot load {path} into {table.qualified}: loading it failed ({type(exc).__name__}: {detail}), "
            "so nothing was written. Expected a complete, uncorrupted file in a supported format."
        ) from exc
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{STAGE}")
    return LoadResult(load_id, table.name, source_file, row_count, skipped=False)


def _commit_load(
    con: duckdb.DuckDBPyConnection,
    table: RawTable,
    load_id: str,
    source_kind: str,
    source_file: str,
    content_sha256: str,
    row_count: int,
) -> None:
    """Copy the stage into ``table`` and record the load, all or nothing."""
    sheet = "sheet, " if table.has_sheet else ""
    columns = f"source_row, {sheet}{', '.join(table.columns)}, malformed_line"
    con.begin()
    try:
        con.execute(
            f"INSERT INTO {table.qualified} (load_id, source_file, {columns}) "
            f"SELECT ?, ?, {columns} FROM {STAGE}",
            [load_id, source_file],
        )
        con.execute(
            "INSERT INTO raw.loads SELECT ?, ?, ?, ?, ?, ?, ?, coalesce(max(load_seq), 0) + 1 FROM raw.loads",
            # loaded_at is UTC; the column is a plain TIMESTAMP.
            [
                load_id,
                source_kind,
                table.name,
                source_file,
                content_sha256,
                row_count,
                dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            ],
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise
