"""Read one source file, as text, into a temporary stage table shaped like its raw table.

Every reader writes the stage columns ``source_row, sheet, <business columns>, malformed_line``, all
business values VARCHAR exactly as in the file (empty -> NULL). The loader then copies the stage into
``raw.*`` in one transaction, so a reader failing half-way never touches the raw tables.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import gzip
import io
import itertools
import logging
import math
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import openpyxl
import pyarrow as pa
from openpyxl.utils.exceptions import InvalidFileException

from orchestration.ingest.errors import IngestError
from orchestration.ingest.schema import RawTable, map_columns

log = logging.getLogger(__name__)

STAGE = "_ingest_stage"
TEXT_SUFFIXES = (".csv", ".csv.gz")
SUFFIXES = (*TEXT_SUFFIXES, ".parquet", ".xlsx")
_CHUNK_BYTES = 1 << 20
_BATCH_ROWS = 50_000
# A quoted field may span lines; past this many lines an unclosed quote is taken for broken quoting.
_MAX_RECORD_LINES = 100
_DELIMITERS = (",", ";", "\t", "|")


def file_suffix(path: Path) -> str | None:
    """The supported suffix ``path`` ends with (case-insensitive), or None."""
    name = path.name.lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def supported_suffixes(table: RawTable) -> tuple[str, ...]:
    # Only order lines carry a `sheet` column, so only they can come from a multi-sheet workbook.
    return SUFFIXES if table.has_sheet else (*TEXT_SUFFIXES, ".parquet")


def stage_file(con: duckdb.DuckDBPyConnection, path: Path, table: RawTable) -> int:
    """(Re)create the stage table, fill it from ``path`` and return its row count."""
    suffix = file_suffix(path)
    if suffix not in supported_suffixes(table):
        raise IngestError(
            f"Cannot load {path}: {path.name!r} is not a supported file type for {table.qualified}. "
            f"Expected a file ending in {', '.join(supported_suffixes(table))}."
        )
    if path.stat().st_size == 0:
        raise IngestError(
            f"Cannot load {path}: the file is empty (0 bytes). Expected a header row followed by data rows."
        )
    columns = ", ".join(f"{column} VARCHAR" for column in table.columns)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {STAGE} "
        f"(source_row BIGINT, sheet VARCHAR, {columns}, malformed_line VARCHAR)"
    )
    if suffix == ".parquet":
        _stage_parquet(con, path, table)
    elif suffix == ".xlsx":
        _stage_xlsx(con, path, table)
    else:
        _stage_csv(con, path, table, gzipped=suffix == ".csv.gz")
    row_count = con.execute(f"SELECT count(*) FROM {STAGE}").fetchone()[0]
    if row_count == 0:
        raise IngestError(
            f"Cannot load {path}: it has a header but no data rows. "
            "Expected at least one row below the header."
        )
    return row_count


def _append_rows(con: duckdb.DuckDBPyConnection, table: RawTable, rows: Iterable[tuple]) -> None:
    """Insert stage-shaped tuples in order, a batch at a time, so memory stays flat for any file size."""
    schema = pa.schema(
        [("source_row", pa.int64()), ("sheet", pa.string())]
        + [(column, pa.string()) for column in (*table.columns, "malformed_line")]
    )
    rows = iter(rows)
    while batch := list(itertools.islice(rows, _BATCH_ROWS)):
        arrays = [pa.array(values, type=column.type) for values, column in zip(zip(*batch), schema)]
        con.register("_ingest_batch", pa.Table.from_arrays(arrays, schema=schema))
        con.execute(f"INSERT INTO {STAGE} SELECT * FROM _ingest_batch")
    con.unregister("_ingest_batch")


# --- CSV / CSV.GZ ---------------------------------------------------------------------------------------


def _open_binary(path: Path, gzipped: bool) -> IO[bytes]:
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _open_text(path: Path, gzipped: bool) -> io.TextIOWrapper:
    # newline="" keeps line ends, so quoted multi-line fields and the original line text survive.
    return io.TextIOWrapper(_open_binary(path, gzipped), encoding="utf-8-sig", newline="")


@dataclass(frozen=True)
class _TextScan:
    """What one pass over a text file's bytes found."""

    utf8: bool  # else it is read as a legacy 8-bit encoding
    has_nul: bool  # some line holds a NUL byte (it then goes to malformed_line)


def _scan_text(path: Path, gzipped: bool) -> _TextScan:
    """Stream the file once: refuse UTF-16 and corrupt gzip; tell UTF-8 from legacy text; note NUL bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    has_nul = False
    try:
        with _open_binary(path, gzipped) as stream:
            for number, chunk in enumerate(iter(lambda: stream.read(_CHUNK_BYTES), b"")):
                if number == 0 and chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise IngestError(
                        f"Cannot load {path}: it is encoded as UTF-16 (it starts with a UTF-16 "
                        "byte-order mark). Expected UTF-8 or Latin-1/Windows-1252 text; "
                        "re-save it as 'CSV UTF-8'."
                    )
                has_nul = has_nul or b"\x00" in chunk
                if utf8:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        utf8 = False
            if utf8:
                decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        utf8 = False  # the file ends inside a multi-byte sequence
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile and zlib.error are OSErrors too
        problem = "its gzip stream is corrupt or truncated" if gzipped else "reading it failed"
        raise IngestError(
            f"Cannot load {path}: {problem} ({exc}). Expected a complete, readable "
            f"{'gzip-compressed ' if gzipped else ''}CSV file; copy or download it again."
        ) from exc
    if has_nul and _nul_throughout(path, gzipped):
        raise IngestError(
            f"Cannot load {path}: it contains NUL bytes, so it is binary data or UTF-16 "
            "text, not a readable CSV. Expected UTF-8 or Latin-1/Windows-1252 text."
        )
    return _TextScan(utf8, has_nul)


def _nul_throughout(path: Path, gzipped: bool) -> bool:
    """True when NUL bytes are in the header line or in most lines: UTF-16 (every line) or binary data.

    Text exports may carry a few NUL bytes on some lines (a crash, a bad copy); those lines are malformed,
    the file is not.
    """
    header_nul: bool | None = None
    lines = nul_lines = 0
    open_line_nul = open_line = False  # the line the chunk ends inside: holds a NUL / has bytes
    with _open_binary(path, gzipped) as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            *ended, rest = chunk.split(b"\n")
            for part in ended:
                nul = open_line_nul or b"\x00" in part
                header_nul = nul if header_nul is None else header_nul
                lines, nul_lines = lines + 1, nul_lines + nul
                open_line_nul = open_line = False
            open_line_nul = open_line_nul or b"\x00" in rest
            open_line = open_line or bool(rest)
    if open_line:
        header_nul = open_line_nul if header_nul is None else header_nul
        lines, nul_lines = lines + 1, nul_lines + open_line_nul
    return bool(header_nul) or 2 * nul_lines > lines


def _transcode_to_utf8(path: Path, gzipped: bool, target: Path) -> str:
    """Write ``path`` as UTF-8 to ``target``; return the legacy codec it was read with.

    Windows-1252 comes first (Excel's "CSV" on Western Windows); it leaves 5 bytes undefined, and a
    file containing one of those can only be Latin-1, which decodes every byte.
    """

    def write(codec: str) -> None:
        with _open_binary(path, gzipped) as source, open(target, "w", encoding="utf-8", newline="") as sink:
            for chunk in iter(lambda: source.read(_CHUNK_BYTES), b""):
                sink.write(chunk.decode(codec))

    try:
        write("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        write("latin-1")
        return "latin-1"


@dataclass(frozen=True)
class _CsvLayout:
    """How a CSV file splits, and which of its fields feed which raw column."""

    source: Path  # the file as given (it may be read from a UTF-8 copy)
    table: RawTable
    delimiter: str
    n_fields: int  # fields the header names
    positions: dict[str, int]  # raw column -> field index


def _read_layout(source: Path, path: Path, gzipped: bool, table: RawTable) -> _CsvLayout:
    with _open_text(path, gzipped) as stream:
        line = stream.readline()
    delimiter = max(_DELIMITERS, key=line.count)  # ties (e.g. one column) go to ","
    header = next(csv.reader([line], delimiter=delimiter), [])
    while header and not header[-1].strip():
        header.pop()  # a trailing delimiter on the header names no column
    positions = map_columns([name.strip() for name in header], table, str(source))
    return _CsvLayout(source, table, delimiter, len(header), positions)


def _stage_csv(con: duckdb.DuckDBPyConnection, path: Path, table: RawTable, gzipped: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="recsys-ingest-") as scratch:
        text_path = path
        scan = _scan_text(path, gzipped)
        if not scan.utf8:
            text_path = Path(scratch) / "utf8.csv"
            codec = _transcode_to_utf8(path, gzipped, text_path)
            gzipped = False
            log.info("%s is not UTF-8; read it as %s", path, codec)
        layout = _read_layout(path, text_path, gzipped, table)
        if scan.has_nul:
            # DuckDB's reader would take a NUL as part of a value; Python sends such a line to malformed_line.
            log.warning("%s has lines holding NUL bytes; splitting it in Python", path)
            _csv_line_by_line(con, text_path, gzipped, layout, Path(scratch) / "records.csv")
            return
        try:
            _csv_with_duckdb(con, text_path, gzipped, layout)
        except duckdb.Error as exc:
            # DuckDB's strict reader refuses the whole file for one bad line.
            log.warning(
                "%s has lines DuckDB cannot split (%s); splitting it in Python", path, _first_line(exc)
            )
            _csv_line_by_line(con, text_path, gzipped, layout, Path(scratch) / "records.csv")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _csv_with_duckdb(
    con: duckdb.DuckDBPyConnection, path: Path, gzipped: bool, layout: _CsvLayout, numbered: bool = False
) -> None:
    """Read with DuckDB's native, streaming reader; raises duckdb.Error on the first line it cannot split.

    ``numbered``: a file written by ``_csv_line_by_line``, without header, whose first field is the
    record's data-row ordinal in the source file.
    """
    shift = int(numbered)
    fields = {f"c{i}": "VARCHAR" for i in range(layout.n_fields + shift)}
    values = ", ".join(
        f"c{layout.positions[column] + shift}" if column in layout.positions else "NULL"
        for column in layout.table.columns
    )
    con.execute(
        f"INSERT INTO {STAGE} (source_row, {', '.join(layout.table.columns)}) "
        f"SELECT {'CAST(c0 AS BIGINT)' if numbered else 'NULL'}, {values} FROM read_csv(?, header = ?, "
        "auto_detect = false, columns = ?, delim = ?, quote = '\"', escape = '\"', strict_mode = true, "
        "null_padding = false, encoding = 'utf-8', compression = ?)",
        [str(path), not numbered, fields, layout.delimiter, "gzip" if gzipped else "none"],
    )
    if not numbered:
        # DuckDB appends scan results in file order (preserve_insertion_order): rowid is the data-row ordinal.
        con.execute(f"UPDATE {STAGE} SET source_row = rowid + 1")


def _csv_line_by_line(
    con: duckdb.DuckDBPyConnection, path: Path, gzipped: bool, layout: _CsvLayout, scratch_file: Path
) -> None:
    """Split the file into records in Python; a line that cannot be split goes to malformed_line.

    Well-formed records are not turned into Python values: their text is copied, prefixed with its
    ordinal, to ``scratch_file``, which DuckDB then reads at native speed. Should DuckDB still refuse a
    record Python accepted (e.g. a line past its 2 MB limit), every field is split in Python instead.
    """
    no_values = (None,) * len(layout.table.columns)

    def malformed_rows(records: Iterator[tuple[str, list[str] | None]], sink: IO[str]) -> Iterator[tuple]:
        for ordinal, (text, fields) in enumerate(records, start=1):
            if fields is None:
                yield (ordinal, None, *no_values, text)
            else:
                sink.write(f"{ordinal}{layout.delimiter}{text}\n")

    with _open_text(path, gzipped) as stream, open(scratch_file, "w", encoding="utf-8", newline="") as sink:
        stream.readline()  # header
        _append_rows(con, layout.table, malformed_rows(_split_records(stream, layout), sink))
    try:
        _csv_with_duckdb(con, scratch_file, False, layout, numbered=True)
    except duckdb.Error as exc:
        log.warning(
            "%s: DuckDB refuses a record Python accepted (%s); splitting every field",
            layout.source,
            _first_line(exc),
        )
        con.execute(f"DELETE FROM {STAGE}")
        _append_rows(con, layout.table, _csv_rows_python(path, gzipped, layout))


def _csv_rows_python(path: Path, gzipped: bool, layout: _CsvLayout) -> Iterator[tuple]:
    picks = [layout.positions.get(column) for column in layout.table.columns]
    with _open_text(path, gzipped) as stream:
        stream.readline()  # header
        for ordinal, (text, fields) in enumerate(_split_records(stream, layout), start=1):
            if fields is None:
                yield (ordinal, None, *(None for _ in picks), text)
            else:
                yield (ordinal, None, *(fields[i] or None if i is not None else None for i in picks), None)


class _OpenQuote(Exception):
    """The text ends inside a quoted field."""


def _parse_record(text: str, delimiter: str) -> list[str] | None:
    """The fields of ``text`` if it is exactly one well-formed CSV record, else None."""
    try:
        records = list(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        # The C parser reports reaching the end of input inside quotes with this fixed message.
        if "unexpected end of data" in str(exc):
            raise _OpenQuote from exc
        return None
    return records[0] if len(records) == 1 else None


def _split_records(lines: Iterator[str], layout: _CsvLayout) -> Iterator[tuple[str, list[str] | None]]:
    """Yield ``(text, fields)`` per data record; ``fields`` is None for a line that cannot be split.

    ``text`` is the record's original text without its line end. This matches DuckDB's reader on
    well-formed input: blank lines are skipped (in a one-column file they are an empty value), trailing
    empty fields past the header are dropped, quoted fields may span lines. A line is malformed when its
    field count differs from the header's, its quoting is broken or it holds a NUL byte (no text does);
    it is then a record of its own, and the lines after it are read afresh.
    """
    delimiter, n_fields = layout.delimiter, layout.n_fields
    pending: deque[str] = deque()  # lines read ahead while looking for a closing quote

    def next_line() -> str | None:
        return pending.popleft() if pending else next(lines, None)

    while (line := pending.popleft() if pending else next(lines, None)) is not None:
        if not line.strip("\r\n"):
            if n_fields == 1:
                yield "", [""]
            continue
        group = [line]
        if '"' not in line:
            fields = line.rstrip("\r\n").split(delimiter)  # no quotes: a plain split is the CSV parse
        else:
            fields = None
            while True:
                try:
                    fields = _parse_record("".join(group), delimiter)
                    break
                except _OpenQuote:
                    # Only a line with a quote can close the field; skip parsing the others.
                    while len(group) < _MAX_RECORD_LINES and (more := next_line()) is not None:
                        group.append(more)
                        if '"' in more:
                            break
                    else:
                        break
        while fields is not None and len(fields) > n_fields and fields[-1] == "":
            fields.pop()
        text = "".join(group) if len(group) > 1 else line
        if fields is not None and len(fields) == n_fields and "\x00" not in text:
            yield text.rstrip("\r\n"), fields
        else:
            pending.extendleft(reversed(group[1:]))
            yield line.rstrip("\r\n"), None


# --- Parquet --------------------------------------------------------------------------------------------


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path, table: RawTable) -> None:
    try:
        described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    except duckdb.Error as exc:
        raise IngestError(
            f"Cannot load {path}: it is not a readable Parquet file ({str(exc).splitlines()[0]}). "
            "Expected a complete Parquet file; it may be truncated or corrupt, so copy or export it again."
        ) from exc
    names = [row[0] for row in described]
    positions = map_columns(names, table, str(path))
    # DuckDB prints floats like Python's repr (2.55, 17850.0) and timestamps ISO with seconds.
    quoted = {
        column: '"' + names[position].replace('"', '""') + '"' for column, position in positions.items()
    }
    values = ", ".join(
        f"NULLIF(CAST({quoted[column]} AS VARCHAR), '')" if column in positions else "NULL"
        for column in table.columns
    )
    con.execute(
        f"INSERT INTO {STAGE} (source_row, {', '.join(table.columns)}) "
        f"SELECT file_row_number + 1, {values} FROM read_parquet(?, file_row_number = true)",
        [str(path)],
    )
    # NaN means "no value" in pandas-written files. It is nulled in the stage, not in the scan: filters on
    # the scanned floats can be folded away by Parquet statistics, which leave NaN out.
    for column, position in positions.items():
        if described[position][1] in ("FLOAT", "DOUBLE"):
            con.execute(f"UPDATE {STAGE} SET {column} = NULL WHERE {column} IN ('nan', '-nan')")


# --- Excel ----------------------------------------------------------------------------------------------


def cell_text(value: Any) -> str | None:
    """Render a typed Excel cell as text the way DuckDB renders the same Parquet value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return None if math.isnan(value) else repr(value)
    if isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        return text + f".{value.microsecond:06d}".rstrip("0") if value.microsecond else text
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value) or None


def _stage_xlsx(con: duckdb.DuckDBPyConnection, path: Path, table: RawTable) -> None:
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
        raise IngestError(
            f"Cannot load {path}: it is not a readable .xlsx workbook ({exc}). "
            "Expected an Excel 2007+ workbook; the file may be truncated or corrupt, "
            "so download or save it again."
        ) from exc
    try:
        for sheet in workbook.worksheets:
            _append_rows(con, table, _sheet_rows(sheet, table, path))
    finally:
        workbook.close()


def _sheet_rows(sheet: Any, table: RawTable, path: Path) -> Iterator[tuple]:
    """Stage tuples of one sheet; its first non-empty row is the header, empty rows are skipped."""
    # Some writers record a wrong <dimension>, and openpyxl would cut rows to it; take each row as it is.
    sheet.reset_dimensions()
    rows = (row for row in sheet.iter_rows(values_only=True) if any(value not in (None, "") for value in row))
    header = next(rows, None)
    if header is None:
        return  # an empty sheet (e.g. notes) holds no data
    positions = map_columns(
        [(cell_text(name) or "").strip() for name in header], table, f"{path} (sheet {sheet.title!r})"
    )
    picks = [positions.get(column) for column in table.columns]
    for ordinal, row in enumerate(rows, start=1):
        # Rows come ragged: trailing empty cells are not stored.
        values = (cell_text(row[i]) if i is not None and i < len(row) else None for i in picks)
        yield (ordinal, sheet.title, *values, None)
