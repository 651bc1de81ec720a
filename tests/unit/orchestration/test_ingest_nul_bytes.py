"""NUL bytes on a few lines of a text export make those lines malformed, not the file; a file that is binary
or UTF-16 throughout is still refused."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import duckdb
import pytest

from orchestration.ingest import IngestError, load_generic, load_online_retail, raw_table_counts

HEADER = "user_id,item_id,timestamp,event_type"
N_LINES = 20_000
NUL_ROWS = range(950, N_LINES + 1, 950)  # 950, 1900, ..., 19950: 21 data lines


def interaction_line(row: int) -> str:
    """A clean view, each at its own minute from 2024-01-01 00:00 on."""
    at = dt.datetime(2024, 1, 1) + dt.timedelta(minutes=row)
    return f"u{row % 50},i{row % 97},{at:%Y-%m-%d %H:%M:%S},view"


def nul_line(row: int) -> str:
    # Crashes and bad copies leave NULs anywhere: inside a value, as a whole line, at its start or end. Each
    # line differs from the others, or the later copies would be counted as duplicates, not quarantined.
    kind = row // 950 % 4
    if kind == 0:
        return f"u{row % 50},i\x00{row},2024-01-01T00:00:00,view"
    if kind == 1:
        return "\x00" * (row // 950)
    if kind == 2:
        return f"\x00u{row % 50},i{row},2024-01-01T00:00:00,view"
    return f"u{row % 50},i{row},2024-01-01T00:00:00,view\x00\x00"


def export_lines() -> list[str]:
    return [nul_line(row) if row in NUL_ROWS else interaction_line(row) for row in range(1, N_LINES + 1)]


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def _write(folder: Path, lines: list[str], gzipped: bool = False, encoding: str = "utf-8") -> Path:
    folder.mkdir()
    data = "\r\n".join([HEADER, *lines]).encode(encoding) + b"\r\n"
    path = folder / ("interactions.csv.gz" if gzipped else "interactions.csv")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return folder


@pytest.mark.parametrize("gzipped", [False, True])
def test_lines_with_nul_are_malformed_and_every_line_is_a_row(con, tmp_path, gzipped):
    lines = export_lines()
    assert len(NUL_ROWS) == 21 and sum("\x00" in line for line in lines) == 21

    (result,) = load_generic(con, _write(tmp_path / "export", lines, gzipped))

    assert result.row_count == N_LINES
    malformed = con.execute(
        "select source_row, malformed_line from raw.interactions where malformed_line is not null order by 1"
    ).fetchall()
    assert malformed == [(row, nul_line(row)) for row in NUL_ROWS]  # kept byte for byte, NULs included
    assert con.execute(
        "select count(*), count(user_id), count(distinct source_row), min(source_row), max(source_row) "
        "from raw.interactions"
    ).fetchone() == (N_LINES, N_LINES - 21, N_LINES, 1, N_LINES)
    assert con.execute(
        "select user_id, item_id, timestamp, event_type from raw.interactions where source_row in (949, 951)"
    ).fetchall() == [
        ("u49", "i76", "2024-01-01 15:49:00", "view"), ("u1", "i78", "2024-01-01 15:51:00", "view")
    ]
    assert con.execute("select row_count from raw.loads").fetchone() == (N_LINES,)


def test_nul_lines_in_a_legacy_encoded_file(con, tmp_path):
    lines = [
        "u1,caf\u00e9,2024-01-01T00:00:00,view", "u2,i\x002,2024-01-01T00:00:00,view", "u3,i3,2024-01-01,cart"
    ]

    (result,) = load_generic(con, _write(tmp_path / "export", lines, encoding="cp1252"))

    assert result.row_count == 3
    assert con.execute(
        "select source_row, user_id, item_id, malformed_line from raw.interactions order by source_row"
    ).fetchall() == [(1, "u1", "caf\u00e9", None), (2, None, None, lines[1]), (3, "u3", "i3", None)]


def test_a_file_with_nul_throughout_is_refused(con, tmp_path):
    row = "536365,85123A,HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom"
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    cases = {
        "header.csv": f"{header}\x00\n{row}\n{row}\n{row}\n",  # the header itself cannot be read
        "most.csv": f"{header}\n{row}\x00\n{row}\x00\n{row}\x00\n{row}\n",  # 3 of 5 lines
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(IngestError, match="contains NUL bytes, so it is binary data or UTF-16 text"):
            load_online_retail(con, tmp_path / name)
    assert raw_table_counts(con)["order_lines"] == 0

    # Half of the lines is not most of them: 2 of 4 lines hold a NUL, so the file loads with 2 malformed.
    (tmp_path / "half.csv").write_text(f"{header}\n{row}\x00\n{row}\x00\n{row}\n")
    (result,) = load_online_retail(con, tmp_path / "half.csv")
    assert result.row_count == 3
    assert con.execute("select count(malformed_line) from raw.order_lines").fetchone() == (2,)
