"""Bad input raises one IngestError naming the file, the problem and what was expected, and writes nothing."""

from __future__ import annotations

import gzip
import random
import zipfile
from pathlib import Path

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.ingest import (
    IngestError,
    load_generic,
    load_items,
    load_online_retail,
    load_source,
    raw_table_counts,
)

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
ROW = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom"
EMPTY = {"loads": 0, "order_lines": 0, "interactions": 0, "items": 0}


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def garbage(size: int) -> bytes:
    return random.Random(7).randbytes(size)


def raises(con, load, path: Path, *fragments: str) -> str:
    """Assert ``load`` fails with an IngestError naming ``path`` and every fragment, and wrote nothing."""
    with pytest.raises(IngestError) as caught:
        load(con, path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    assert raw_table_counts(con) == EMPTY
    return message


def test_missing_file_and_folder(con, tmp_path):
    raises(con, load_online_retail, tmp_path / "nope.csv", "does not exist")
    raises(con, load_generic, tmp_path / "nope", "does not exist", "interactions.csv")
    raises(con, lambda c, p: load_items(c, p, "generic"), tmp_path, "is a folder")


def test_empty_file_and_header_without_rows(con, tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    raises(con, load_online_retail, tmp_path / "empty.csv", "empty (0 bytes)", "header row")
    (tmp_path / "header.csv.gz").write_bytes(gzip.compress(f"{HEADER}\n\n".encode()))
    raises(con, load_online_retail, tmp_path / "header.csv.gz", "no data rows")
    pq.write_table(
        pa.table({name: pa.array([], pa.string()) for name in HEADER.split(",")}), tmp_path / "header.parquet"
    )
    raises(con, load_online_retail, tmp_path / "header.parquet", "no data rows")


def test_missing_required_columns_are_named(con, tmp_path):
    (tmp_path / "orders.csv").write_text("Invoice,StockCode,Description,Quantity,When,Country\n1,2,3,4,5,6\n")
    message = raises(
        con,
        load_online_retail,
        tmp_path / "orders.csv",
        "invoice_date",
        "unit_price (or Price)",
        "customer_id",
        "'When'",
    )
    assert (
        "invoice," not in message.split("missing:")[1].split(".")[0]
    )  # found columns are not reported missing

    folder = tmp_path / "generic"
    folder.mkdir()
    (folder / "interactions.csv").write_text("user,item_id,timestamp\nu1,i1,t\n")
    raises(con, load_generic, folder, "user_id", "'user'")


def test_sheet_missing_columns_is_named(con, tmp_path):
    workbook = openpyxl.Workbook()
    workbook.active.title = "Notes"
    workbook.active.append(["just", "notes"])
    workbook.save(tmp_path / "orders.xlsx")
    raises(con, load_online_retail, tmp_path / "orders.xlsx", "sheet 'Notes'", "stock_code")


def test_unreadable_encodings(con, tmp_path):
    (tmp_path / "utf16.csv").write_text(f"{HEADER}\n{ROW}\n", encoding="utf-16")
    raises(con, load_online_retail, tmp_path / "utf16.csv", "UTF-16", "Expected UTF-8")
    (tmp_path / "utf16le.csv").write_bytes(f"{HEADER}\n{ROW}\n".encode("utf-16-le"))  # no byte-order mark
    raises(con, load_online_retail, tmp_path / "utf16le.csv", "NUL bytes")
    (tmp_path / "binary.csv").write_bytes(garbage(4096))
    raises(con, load_online_retail, tmp_path / "binary.csv", "NUL bytes", "Expected UTF-8")


def test_corrupt_or_truncated_xlsx(con, tmp_path):
    (tmp_path / "random.xlsx").write_bytes(garbage(4096))
    raises(con, load_online_retail, tmp_path / "random.xlsx", "not a readable .xlsx workbook")

    workbook = openpyxl.Workbook()
    workbook.active.append(HEADER.split(","))
    for n in range(2000):
        workbook.active.append([n, "A", "text", 1, "12/1/2010 8:26", 2.5, 17850, "UK"])
    workbook.save(tmp_path / "full.xlsx")
    data = (tmp_path / "full.xlsx").read_bytes()
    (tmp_path / "truncated.xlsx").write_bytes(data[: len(data) // 2])
    raises(con, load_online_retail, tmp_path / "truncated.xlsx", "not a readable .xlsx workbook")

    # A sound zip whose sheet XML is cut short fails mid-read, after rows were already streamed.
    with (
        zipfile.ZipFile(tmp_path / "full.xlsx") as source,
        zipfile.ZipFile(tmp_path / "cut_sheet.xlsx", "w") as target,
    ):
        for entry in source.infolist():
            content = source.read(entry)
            target.writestr(
                entry, content[: len(content) // 2] if entry.filename.endswith("sheet1.xml") else content
            )
    raises(
        con,
        load_online_retail,
        tmp_path / "cut_sheet.xlsx",
        "loading it failed",
        "ParseError",
        "nothing was written",
    )


def test_corrupt_or_truncated_gzip(con, tmp_path):
    lines = [HEADER] + [ROW.replace("536365", str(n)) for n in range(20_000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    (tmp_path / "truncated.csv.gz").write_bytes(data[: len(data) // 2])
    raises(con, load_online_retail, tmp_path / "truncated.csv.gz", "gzip stream is corrupt or truncated")
    (tmp_path / "notgzip.csv.gz").write_bytes(f"{HEADER}\n{ROW}\n".encode())
    raises(con, load_online_retail, tmp_path / "notgzip.csv.gz", "gzip stream is corrupt or truncated")


def test_corrupt_or_truncated_parquet(con, tmp_path):
    (tmp_path / "random.parquet").write_bytes(garbage(4096))
    raises(con, load_online_retail, tmp_path / "random.parquet", "not a readable Parquet file")
    table = pa.table({name: [f"value {n}" for n in range(1000)] for name in HEADER.split(",")})
    pq.write_table(table, tmp_path / "full.parquet", compression="none")
    data = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "truncated.parquet").write_bytes(data[: len(data) // 2])
    raises(con, load_online_retail, tmp_path / "truncated.parquet", "not a readable Parquet file")

    # Intact footer, damaged data pages: the schema reads, the rows do not.
    damaged = bytearray(data)
    damaged[200 : len(data) // 2 : 7] = b"\xff" * len(range(200, len(data) // 2, 7))
    (tmp_path / "damaged.parquet").write_bytes(bytes(damaged))
    raises(con, load_online_retail, tmp_path / "damaged.parquet", "loading it failed", "nothing was written")


def test_unsupported_file_types(con, tmp_path):
    (tmp_path / "orders.json").write_text("[]")
    raises(con, load_online_retail, tmp_path / "orders.json", "not a supported file type", ".csv.gz")
    (tmp_path / "items.xlsx").write_bytes(b"PK")
    raises(
        con,
        lambda c, p: load_items(c, p, "generic"),
        tmp_path / "items.xlsx",
        "not a supported file type",
        ".parquet",
    )


def test_folders_without_their_files(con, tmp_path):
    (tmp_path / "README.md").write_text("notes")
    raises(con, load_online_retail, tmp_path, "holds no Online Retail file", ".xlsx")
    raises(con, load_generic, tmp_path, "no interactions file", "README.md", "interactions.csv.gz")
    (tmp_path / "interactions.csv").write_text("user_id,item_id,timestamp\nu,i,t\n")
    (tmp_path / "interactions.parquet").write_bytes(b"")
    raises(con, load_generic, tmp_path, "2 interactions files", "exactly one")


def test_unknown_source_kind(con, tmp_path):
    raises(
        con,
        lambda c, p: load_source(c, "excel", p),
        tmp_path,
        "unknown data source kind 'excel'",
        "online_retail",
    )


def test_row_level_dirt_does_not_raise(con, tmp_path):
    lines = [
        HEADER,
        ROW,
        "not,a,row",
        ROW.replace("2.55", "two pounds").replace("12/1/2010", "31/31/2010"),
        "\x01\x02",
    ]
    (tmp_path / "dirty.csv").write_text("\n".join(lines) + "\n")
    (result,) = load_online_retail(con, tmp_path / "dirty.csv")
    assert result.row_count == 4
    assert con.execute("SELECT count(malformed_line) FROM raw.order_lines").fetchone()[0] == 2
