"""RECSYS_WAREHOUSE's shared-warehouse form: parsed exactly, refused with a message naming what is wrong."""

from __future__ import annotations

import time

import pytest

from orchestration.store.lake import Lake, LakeSettingError, lake_setting, redacted, shared_warehouse
from orchestration.store.warehouse import Warehouse


def test_parse_reads_every_part_and_makes_a_libpq_catalog(tmp_path):
    lake = Lake.parse(f"ducklake+postgresql://ana:s%40cret@db.internal:6543/shop?data_path={tmp_path}/files")
    assert (lake.user, lake.password, lake.host, lake.port, lake.database) == ("ana", "s@cret", "db.internal", 6543,
                                                                               "shop")
    assert lake.data_folder == f"{tmp_path}/files"
    assert lake.catalog == "dbname=shop host=db.internal port=6543 user=ana password=s@cret"
    assert lake.attach_sql() == (f"ATTACH IF NOT EXISTS 'ducklake:postgres:{lake.catalog}' AS warehouse "
                                 f"(DATA_PATH '{tmp_path}/files')")
    assert lake.attach_sql(read_only=True).endswith(", READ_ONLY)")


def test_default_port_relative_data_path_and_object_store():
    lake = Lake.parse("ducklake+postgresql://ana@localhost/shop?data_path=lake-files")
    assert lake.port == 5432 and lake.password is None
    assert lake.data_folder.startswith("/") and lake.data_folder.endswith("/lake-files")
    assert Lake.parse("ducklake+postgresql://ana@h/shop?data_path=s3://bucket/lake").data_folder == "s3://bucket/lake"


def test_libpq_values_with_spaces_or_quotes_are_quoted():
    lake = Lake("ana", "h", 5432, "my shop", "/d", password="it's")
    assert lake.catalog == r"dbname='my shop' host=h port=5432 user=ana password='it\'s'"


@pytest.mark.parametrize(("url", "problem"), [
    ("ducklake+mysql://ana@h:1/shop?data_path=/d", "the scheme is 'ducklake+mysql'"),
    ("ducklake+postgresql://h:1/shop?data_path=/d", "the user or host is missing"),
    ("ducklake+postgresql://ana@h:1/?data_path=/d", "the database name is missing"),
    ("ducklake+postgresql://ana@h:1/shop", "data_path is missing"),
    ("ducklake+postgresql://ana:pw@h:port/shop?data_path=/d", "the port is not a number"),
])
def test_malformed_settings_name_the_problem_and_the_form_without_the_password(url, problem):
    with pytest.raises(LakeSettingError) as raised:
        Lake.parse(url)
    message = str(raised.value)
    assert problem in message
    assert message.startswith("RECSYS_WAREHOUSE=ducklake+")
    assert "ducklake+postgresql://USER[:PASSWORD]@HOST:PORT/DB?data_path=DIR" in message
    assert ":pw@" not in message


def test_redacted_hides_only_the_password():
    assert redacted("ducklake+postgresql://ana:pw@h:1/shop?data_path=/d") == \
        "ducklake+postgresql://ana:***@h:1/shop?data_path=/d"
    assert redacted("ducklake+postgresql://ana@h:1/shop") == "ducklake+postgresql://ana@h:1/shop"


def test_a_file_path_in_the_variable_keeps_the_embedded_warehouse(monkeypatch, tmp_path):
    # dbt's profile reads the file's path from the same variable.
    monkeypatch.setenv("RECSYS_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    assert lake_setting() is None and shared_warehouse() is None
    warehouse = Warehouse(home=str(tmp_path / "home"))
    assert warehouse.lake is None
    assert warehouse.location == str(tmp_path / "home" / "warehouse.duckdb")
    assert warehouse.dbt_environment() == {"RECSYS_DBT_TARGET": "dev",
                                           "RECSYS_WAREHOUSE": str(tmp_path / "home" / "warehouse.duckdb")}
    monkeypatch.setenv("RECSYS_WAREHOUSE", "ducklake+postgresql://ana@h:1/shop?data_path=/d")
    assert Warehouse(home=str(tmp_path / "home")).location == "DuckLake ana@h:1/shop, data in /d"


def test_the_cli_refuses_a_malformed_setting_in_one_line(monkeypatch, capsys, tmp_path):
    from orchestration.apps.cli import USAGE, main

    monkeypatch.setenv("RECSYS_WAREHOUSE", "ducklake+postgresql://ana:pw@h:1/shop")
    assert main(["--home", str(tmp_path), "summary"]) == USAGE
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("recsys summary: RECSYS_WAREHOUSE=ducklake+postgresql://ana:***@h:1/shop: data_path is "
                            "missing; expected ")


def test_a_file_from_a_newer_duckdb_gets_a_clear_error(tmp_path, capsys):
    import struct

    import duckdb

    from orchestration.apps.cli import USAGE, main

    home = tmp_path / "home"
    home.mkdir()
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("create table t as select 1 as a")
    # Stamp the storage version DuckDB 2.0 writes (999) into the header, and its checksum: DuckDB's, the xor of
    # each 8-byte word of the rest of the 4 KiB block times a constant, seeded with 5381.
    with open(home / "warehouse.duckdb", "r+b") as file:
        header = bytearray(file.read(4096))
        header[12:20] = struct.pack("<Q", 999)
        checksum = 5381
        for (word,) in struct.iter_unpack("<Q", bytes(header[8:])):
            checksum ^= (word * 0xBF58476D1CE4E5B9) % 2**64
        header[:8] = struct.pack("<Q", checksum)
        file.seek(0)
        file.write(header)
    assert main(["--home", str(home), "summary"]) == USAGE
    error = capsys.readouterr().err
    assert error.startswith(f"recsys summary: The warehouse {home / 'warehouse.duckdb'} was written by a newer DuckDB")
    assert "rebuild it" in error and error.count("\n") == 1


def test_the_change_token_moves_with_every_write_and_only_then(tmp_path, monkeypatch):
    monkeypatch.delenv("RECSYS_WAREHOUSE", raising=False)
    warehouse = Warehouse(home=str(tmp_path))
    assert warehouse.change_token() == (None, None)  # nothing written yet
    with warehouse.connect() as con:
        con.execute("create table t as select 1 as x")
    written = warehouse.change_token()
    assert written != (None, None)
    with warehouse.connect(read_only=True) as con:
        assert con.execute("select count(*) from t").fetchone() == (1,)
    assert warehouse.change_token() == written  # reading leaves it
    time.sleep(0.05)  # past the kernel's coarse clock tick, which stamps modification times
    with warehouse.connect() as con:
        con.execute("insert into t values (2)")
    assert warehouse.change_token() != written
    lake = Warehouse(home=str(tmp_path), url="ducklake+postgresql://u@localhost:5432/db?data_path=/tmp/lake")
    assert lake.change_token() is None  # a lake's writers leave no trace here: callers read it every time
