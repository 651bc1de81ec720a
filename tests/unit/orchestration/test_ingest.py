"""Ingest loads shop files untouched into raw.*: same text from every format, every line kept, idempotent."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import time
from pathlib import Path

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.ingest import (
    IngestError,
    ensure_raw_schema,
    load_generic,
    load_items,
    load_online_retail,
    load_source,
    raw_table_counts,
)

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
BUSINESS = "invoice, stock_code, description, quantity, invoice_date, unit_price, customer_id, country"
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"

# One small order table, typed as a spreadsheet or Parquet file would hold it, and the text raw must store.
TYPED_ROWS = [
    (536365, "85123A", "WHITE HANGING HEART", 6, dt.datetime(2010, 12, 1, 8, 26), 2.55, 17850, "EIRE"),
    (536366, "22633", "HAND WARMER UNION JACK", 6, dt.datetime(2010, 12, 1, 8, 28), 1.85, 17850, "EIRE"),
    ("C536379", "D", "Discount", -1, dt.datetime(2010, 12, 1, 9, 41), 27.5, None, "United Kingdom"),
]
EXPECTED_TEXT = [
    ("536365", "85123A", "WHITE HANGING HEART", "6", "2010-12-01 08:26:00", "2.55", "17850", "EIRE"),
    ("536366", "22633", "HAND WARMER UNION JACK", "6", "2010-12-01 08:28:00", "1.85", "17850", "EIRE"),
    ("C536379", "D", "Discount", "-1", "2010-12-01 09:41:00", "27.5", None, "United Kingdom"),
]


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def csv_text(rows=EXPECTED_TEXT, header=HEADER) -> str:
    lines = [header] + [",".join("" if value is None else value for value in row) for row in rows]
    return "\n".join(lines) + "\n"


def write_xlsx(path: Path, sheets: dict[str, list[tuple]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        sheet.append(HEADER.split(","))
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


def rows_of(con, load_id: str, columns: str = BUSINESS) -> list[tuple]:
    return con.execute(
        f"SELECT {columns} FROM raw.order_lines WHERE load_id = ? ORDER BY sheet, source_row", [load_id]
    ).fetchall()


def test_every_format_gives_the_same_text(con, tmp_path):
    (tmp_path / "orders.csv").write_text(csv_text())
    with gzip.open(tmp_path / "orders.csv.gz", "wt") as stream:
        stream.write(csv_text())
    columns = list(zip(*TYPED_ROWS))
    columns[0] = [str(value) for value in columns[0]]  # Parquet columns have one type: invoice is text
    table = pa.table(
        dict(zip(HEADER.split(","), columns)),
        schema=pa.schema(
            [
                ("InvoiceNo", pa.string()),
                ("StockCode", pa.string()),
                ("Description", pa.string()),
                ("Quantity", pa.int64()),
                ("InvoiceDate", pa.timestamp("us")),
                ("UnitPrice", pa.float64()),
                ("CustomerID", pa.int64()),
                ("Country", pa.string()),
            ]
        ),
    )
    pq.write_table(table, tmp_path / "orders.parquet")
    write_xlsx(tmp_path / "orders.xlsx", {"Year 2009-2010": TYPED_ROWS[:2], "Year 2010-2011": TYPED_ROWS[2:]})

    results = load_online_retail(con, tmp_path)

    assert [Path(result.source_file).name for result in results] == [
        "orders.csv",
        "orders.csv.gz",
        "orders.parquet",
        "orders.xlsx",
    ]
    for result in results:
        assert result.row_count == 3 and not result.skipped
        assert rows_of(con, result.load_id) == EXPECTED_TEXT, result.source_file
    xlsx = results[-1]
    assert rows_of(con, xlsx.load_id, "sheet, source_row") == [
        ("Year 2009-2010", 1),
        ("Year 2009-2010", 2),
        ("Year 2010-2011", 1),
    ]
    assert rows_of(con, results[0].load_id, "sheet, source_row, source_file") == [
        (None, n, str(tmp_path / "orders.csv")) for n in (1, 2, 3)
    ]


def test_typed_floats_nan_and_empty_cells(con, tmp_path):
    table = pa.table(
        {
            "Invoice": ["1", "2", ""],
            "StockCode": ["A", "B", "C"],
            "Description": ["x", None, "z"],
            "Quantity": [6, 7, 8],
            "InvoiceDate": ["2010-12-01 08:26:00"] * 3,
            "Price": [2.55, float("nan"), 0.1],
            "Customer ID": [17850.0, float("nan"), None],
            "Country": ["UK", "UK", "UK"],
        }
    )
    pq.write_table(table, tmp_path / "orders.parquet")
    write_xlsx(
        tmp_path / "orders.xlsx", {"Sheet1": [(1, "A", "x", 6, "2010-12-01 08:26:00", 2.55, 17850.5, "UK")]}
    )

    parquet, xlsx = load_online_retail(con, tmp_path)

    assert rows_of(con, parquet.load_id, "invoice, description, unit_price, customer_id") == [
        ("1", "x", "2.55", "17850.0"),
        ("2", None, None, None),
        (None, "z", "0.1", None),
    ]
    assert rows_of(con, xlsx.load_id, "invoice, unit_price, customer_id") == [("1", "2.55", "17850.5")]


def test_column_name_variants_and_extra_columns(con, tmp_path):
    online_retail_ii = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country,Extra"
    (tmp_path / "ii.csv").write_text(
        csv_text([row + ("ignored",) for row in EXPECTED_TEXT], header=online_retail_ii)
    )
    odd_spelling = "invoice_no,STOCK_CODE,description,quantity,Invoice Date,unit_price,customer_id,COUNTRY"
    (tmp_path / "odd.csv").write_text(csv_text(EXPECTED_TEXT, header=odd_spelling))

    for result in load_online_retail(con, tmp_path):
        assert rows_of(con, result.load_id) == EXPECTED_TEXT


def test_legacy_encodings_and_bom_round_trip(con, tmp_path):
    row = ("536365", "22", "CAFÉ £5 “TIN” €", "1", "12/1/2010 8:26", "2.1", "17850", "España")
    (tmp_path / "cp1252.csv").write_bytes(csv_text([row]).encode("cp1252"))
    # 0x81 is undefined in Windows-1252, so this file can only be Latin-1.
    latin1 = ("536366", "23", "crème \x81", "1", "12/1/2010 8:26", "2.1", "17850", "España")
    (tmp_path / "latin1.csv").write_bytes(csv_text([latin1]).encode("latin-1"))
    (tmp_path / "utf8bom.csv").write_text(csv_text([row]), encoding="utf-8-sig")

    cp1252, latin, bom = load_online_retail(con, tmp_path)

    assert rows_of(con, cp1252.load_id) == [row]
    assert rows_of(con, latin.load_id) == [latin1]
    assert rows_of(con, bom.load_id) == [row]  # US date text kept as is: parsing is dbt's job


def test_reload_is_skipped_and_a_new_file_appends(con, tmp_path):
    first = tmp_path / "a.csv"
    first.write_text(csv_text())
    (loaded,) = load_online_retail(con, first)
    (again,) = load_online_retail(con, first)

    assert again.skipped and again.load_id == loaded.load_id and again.row_count == 3
    assert raw_table_counts(con) == {"loads": 1, "order_lines": 3, "interactions": 0, "items": 0}

    second = tmp_path / "b.csv"
    second.write_text(csv_text(EXPECTED_TEXT[:2]))
    (appended,) = load_online_retail(con, second)

    assert not appended.skipped and appended.row_count == 2
    assert con.execute(
        "SELECT load_id, load_seq, row_count, source_kind FROM raw.loads ORDER BY load_seq"
    ).fetchall() == [(loaded.load_id, 1, 3, "online_retail"), (appended.load_id, 2, 2, "online_retail")]
    assert raw_table_counts(con)["order_lines"] == 5


def test_every_line_becomes_one_row_and_garbage_is_kept(con, tmp_path):
    lines = [
        HEADER,
        "1,A,ok,6,2010-12-01 08:26:00,2.55,17850,UK",  # 1
        "2,B,too few fields,6",  # 2: malformed
        '3,C,"quoted, with comma and ""quotes""",6,2010-12-01 08:26:00,2.55,,UK',  # 3
        "4,D,too,many,fields,6,x,y,z,w",  # 4: malformed
        "",  # blank: not a data line
        '5,E,"spans',  # 5: a quoted field over two lines
        'two lines",6,2010-12-01 08:26:00,2.55,17850,UK',
        '6,F,"never closed,6,2010-12-01 08:26:00,2.55,17850,UK',  # 6: malformed
        "7,G,ctrl \x01\x0b chars,6,12/1/2010 8:26,abc,17850,UK",  # 7: dirt kept as text
        "8,H,trailing delimiter,6,2010-12-01 08:26:00,2.55,17850,UK,",  # 8: tolerated like DuckDB does
        "\x7f\x1b[garbage",  # 9: malformed
    ]
    (tmp_path / "dirty.csv").write_text("\r\n".join(lines))

    (result,) = load_online_retail(con, tmp_path / "dirty.csv")

    assert result.row_count == 9
    got = rows_of(
        con, result.load_id, "source_row, invoice, description, quantity, unit_price, malformed_line"
    )
    assert got == [
        (1, "1", "ok", "6", "2.55", None),
        (2, None, None, None, None, "2,B,too few fields,6"),
        (3, "3", 'quoted, with comma and "quotes"', "6", "2.55", None),
        (4, None, None, None, None, "4,D,too,many,fields,6,x,y,z,w"),
        (5, "5", "spans\r\ntwo lines", "6", "2.55", None),
        (6, None, None, None, None, lines[8]),
        (7, "7", "ctrl \x01\x0b chars", "6", "abc", None),
        (8, "8", "trailing delimiter", "6", "2.55", None),
        (9, None, None, None, None, "\x7f\x1b[garbage"),
    ]


def test_clean_file_reads_the_same_by_either_parser(con, tmp_path):
    good = [
        "1,A,plain,6,2010-12-01 08:26:00,2.55,17850,UK",
        '2,B,"multi\nline, ""quoted""",6,2010-12-01 08:26:00,2.55,,UK',
        "3,C,trailing spaces  ,6,2010-12-01 08:26:00,2.55,17850,UK,,",
    ]
    (tmp_path / "a_clean.csv").write_text("\n".join([HEADER, *good]) + "\n")
    (tmp_path / "b_dirty.csv").write_text("\n".join([HEADER, *good, "broken"]) + "\n")

    clean, dirty = load_online_retail(con, tmp_path)

    assert rows_of(con, dirty.load_id)[:3] == rows_of(con, clean.load_id)


def test_a_line_too_long_for_duckdb_is_still_split(con, tmp_path, caplog):
    long_text = "x" * 2_100_000  # past DuckDB's 2 MB line limit, so every field is split in Python
    lines = [
        HEADER,
        "1,A,short,6,d,2.55,1,UK",
        f"2,B,{long_text},6,d,2.55,1,UK",
        "garbage",
        '3,"C",q,6,d,2.55,1,UK',
    ]
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")

    (result,) = load_online_retail(con, tmp_path / "long.csv")

    assert "splitting every field" in caplog.text
    assert result.row_count == 4
    got = rows_of(con, result.load_id, "source_row, stock_code, description, malformed_line")
    assert got == [
        (1, "A", "short", None),
        (2, "B", long_text, None),
        (3, None, None, "garbage"),
        (4, "C", "q", None),
    ]


def test_a_failed_load_leaves_the_tables_unchanged(con, tmp_path):
    (tmp_path / "a.csv").write_text(csv_text())
    load_online_retail(con, tmp_path / "a.csv")
    second = tmp_path / "b.csv"
    second.write_text(csv_text(EXPECTED_TEXT[:1]))
    digest = hashlib.sha256(second.read_bytes()).hexdigest()
    load_id = hashlib.sha256(f"{digest}|order_lines".encode()).hexdigest()[:16]
    # A clashing load_id makes the raw.loads insert fail after the order lines were inserted.
    con.execute(
        "INSERT INTO raw.loads (load_id, content_sha256, target_table, load_seq) VALUES (?, 'other', 'x', 9)",
        [load_id],
    )
    before = raw_table_counts(con)

    with pytest.raises(IngestError, match="b.csv"):
        load_online_retail(con, second)

    assert raw_table_counts(con) == before


def test_generic_folder_with_and_without_items(con, tmp_path):
    with_items, without_items = tmp_path / "with", tmp_path / "without"
    for folder in (with_items, without_items):
        folder.mkdir()
        (folder / "interactions.csv").write_text(
            "user_id,item_id,timestamp,event_type,unknown\nu1,i1,2024-01-01T10:00:00Z,view,x\nu1,i2,1704103200,,y\n"
        )
    pq.write_table(
        pa.table({"item_id": ["i1", "i2"], "title": ["Mug", None], "price": [3.5, 4.0]}),
        with_items / "items.parquet",
    )

    results = load_generic(con, with_items)
    assert [(r.target_table, r.row_count) for r in results] == [("interactions", 2), ("items", 2)]
    interactions = (
        "SELECT user_id, item_id, timestamp, event_type, quantity, price, session_id FROM raw.interactions"
    )
    assert con.execute(f"{interactions} ORDER BY source_row").fetchall() == [
        ("u1", "i1", "2024-01-01T10:00:00Z", "view", None, None, None),
        ("u1", "i2", "1704103200", None, None, None, None),
    ]
    assert con.execute(
        "SELECT item_id, title, description, price FROM raw.items ORDER BY source_row"
    ).fetchall() == [("i1", "Mug", None, "3.5"), ("i2", None, None, "4.0")]

    (result,) = load_source(con, "generic", without_items)
    assert result.skipped  # the same interactions content was already loaded
    assert raw_table_counts(con) == {"loads": 2, "interactions": 2, "items": 2, "order_lines": 0}


def test_a_warehouse_from_before_event_ids_gains_the_column_and_keeps_its_rows(tmp_path):
    """raw.interactions as the first release created it (no event_id): the next ingest adds the column, old rows
    read NULL there, and a file with event ids loads them."""
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE SCHEMA raw")
    con.execute(
        "CREATE TABLE raw.interactions (load_id VARCHAR, source_file VARCHAR, source_row BIGINT, user_id VARCHAR, "
        "item_id VARCHAR, timestamp VARCHAR, event_type VARCHAR, quantity VARCHAR, price VARCHAR, "
        "session_id VARCHAR, malformed_line VARCHAR)"
    )
    con.execute("INSERT INTO raw.interactions (load_id, source_row, user_id) VALUES ('old', 1, 'u0')")
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "interactions.csv").write_text("event_id,user_id,item_id,timestamp\n e-1 ,u1,i1,2024-01-01\n")
    load_generic(con, folder)
    assert con.execute(
        "SELECT user_id, event_id FROM raw.interactions ORDER BY load_id = 'old' DESC"
    ).fetchall() == [("u0", None), ("u1", " e-1 ")]
    ensure_raw_schema(con)  # again: nothing left to add
    columns = [row[0] for row in con.execute("DESCRIBE raw.interactions").fetchall()]
    assert columns.count("event_id") == 1 and columns[-1] == "event_id"


def test_items_with_only_item_id(con, tmp_path):
    (tmp_path / "items.csv.gz").write_bytes(gzip.compress(b"item_id\ni1\ni2\ni3\n"))

    result = load_items(con, tmp_path / "items.csv.gz", source_kind="synthetic")

    assert result.row_count == 3
    assert con.execute(
        "SELECT item_id, title, category, brand, price FROM raw.items ORDER BY source_row"
    ).fetchall() == [(f"i{n}", None, None, None, None) for n in (1, 2, 3)]
    assert con.execute("SELECT source_kind, target_table FROM raw.loads").fetchall() == [
        ("synthetic", "items")
    ]


def test_ensure_raw_schema_creates_every_table_once(con):
    ensure_raw_schema(con)
    ensure_raw_schema(con)
    assert raw_table_counts(con) == {"loads": 0, "order_lines": 0, "interactions": 0, "items": 0}
    columns = [row[0] for row in con.execute("DESCRIBE raw.order_lines").fetchall()]
    assert columns == [
        "load_id",
        "source_file",
        "source_row",
        "sheet",
        *BUSINESS.split(", "),
        "malformed_line",
    ]


@pytest.mark.realdata
def test_real_online_retail_loads_fast_and_whole(con):
    folder = SHARED_DATA / "online_retail"
    if not (folder / "online_retail.csv.gz").exists():
        pytest.skip(f"real data not available: {folder} is missing (see shared/data/*/PROVENANCE.md)")

    started = time.perf_counter()
    (csv_load,) = load_online_retail(con, folder / "online_retail.csv.gz")
    (parquet_load,) = load_online_retail(con, folder / "online_retail.parquet")
    elapsed = time.perf_counter() - started

    assert csv_load.row_count == parquet_load.row_count == 541_909
    assert con.execute("SELECT count(malformed_line) FROM raw.order_lines").fetchone()[0] == 0
    first_and_last = (
        "SELECT source_row, invoice, stock_code FROM raw.order_lines "
        "WHERE load_id = ? AND source_row IN (1, 541909) ORDER BY 1"
    )
    for load in (csv_load, parquet_load):
        assert con.execute(first_and_last, [load.load_id]).fetchall() == [
            (1, "536365", "85123A"),
            (541_909, "581587", "22138"),
        ]
    assert elapsed < 30, f"both files took {elapsed:.1f}s"
