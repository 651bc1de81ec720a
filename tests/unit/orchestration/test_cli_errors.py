"""User errors are one paragraph on stderr and exit status 2, refused before anything runs; two processes on one
warehouse wait for each other, naming the holder."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orchestration.apps import cli
from orchestration.store.warehouse import Warehouse, WarehouseBusyError


def _one_paragraph(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_a_missing_data_path_is_refused_before_a_run(recsys_home, tmp_path, capsys):
    typo = tmp_path / "shpo"
    assert cli.main(["materialize", "--source", "generic", "--data", str(typo)]) == cli.USAGE
    err = _one_paragraph(capsys.readouterr().err)
    assert f"--data {typo} does not exist" in err and "interactions.csv" in err
    # Refused before the run: no Dagster run was recorded, no warehouse was created.
    assert not (recsys_home / "warehouse.duckdb").exists() and not (recsys_home / "dagster").exists()

    shop_file = tmp_path / "interactions.csv"
    shop_file.write_text("user_id,item_id,timestamp\n")
    assert cli.main(["materialize", "--source", "generic", "--data", str(shop_file)]) == cli.USAGE
    assert "is a file: --source generic expects a folder" in _one_paragraph(capsys.readouterr().err)


def test_an_unknown_selection_is_a_usage_error(recsys_home, capsys):
    assert cli.main(["materialize", "--select", "key:no_such_asset"]) == cli.USAGE
    err = _one_paragraph(capsys.readouterr().err)
    assert "--select 'key:no_such_asset' is not an asset selection of this project (it selects no asset)" in err
    assert not (recsys_home / "dagster").exists()


def test_summary_and_quarantine_on_an_empty_home(recsys_home, capsys):
    for command in (["summary"], ["quarantine"]):
        assert cli.main(command) == cli.USAGE
        err = _one_paragraph(capsys.readouterr().err)
        assert f"the home {recsys_home} has no warehouse yet" in err
    assert not recsys_home.exists()  # looking did not create it


def test_an_unknown_quarantine_reason_lists_the_valid_ones(recsys_home, capsys):
    Warehouse().write_table("marts.quarantine", __import__("pandas").DataFrame({"reason": ["missing_user"]}))
    assert cli.main(["quarantine", "--reason", "missing_usr"]) == cli.USAGE
    err = _one_paragraph(capsys.readouterr().err)
    assert "--reason 'missing_usr' is not a quarantine reason code" in err
    assert "missing_user, unparseable_timestamp" in err and "superseded_item_version." in err


def test_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for line in ("0    success", "2    usage error", "3    recommend --user: the customer is unknown",
                 "130  the run was stopped by SIGINT", "143  the run was stopped by SIGTERM"):
        assert line in out


HOLDER = """
import sys, time
from orchestration.store.warehouse import Warehouse
with Warehouse(sys.argv[1]).hold("recsys materialize"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_process_waits_for_the_warehouse_and_says_who_holds_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        said: list[str] = []
        monkeypatch.setenv("RECSYS_WAREHOUSE_WAIT_SECONDS", "0")
        with pytest.raises(WarehouseBusyError, match=rf"held by PID {holder.pid} \(recsys materialize, since "):
            with Warehouse(str(home)).hold("second run", notify=said.append):
                pass
        monkeypatch.setenv("RECSYS_WAREHOUSE_WAIT_SECONDS", "30")
        started = time.monotonic()
        with Warehouse(str(home)).hold("second run", notify=said.append):
            waited = time.monotonic() - started
        assert holder.wait(timeout=10) == 0
    finally:
        holder.kill()
    assert 1 < waited < 10
    assert len(said) == 1 and said[0].startswith(f"Waiting for the warehouse {home / 'warehouse.duckdb'}: held by "
                                                 f"PID {holder.pid} (recsys materialize")


DUCKDB_HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("open", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_a_connection_waits_for_duckdbs_lock_and_names_the_pid(tmp_path, monkeypatch):
    warehouse = Warehouse(str(tmp_path / "home"))
    with warehouse.connect():
        pass
    holder = subprocess.Popen([sys.executable, "-c", DUCKDB_HOLDER, str(warehouse.path), "3"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        monkeypatch.setenv("RECSYS_WAREHOUSE_WAIT_SECONDS", "0")
        with pytest.raises(WarehouseBusyError, match=rf"is in use by .*\(PID {holder.pid}\); gave up after 0 s"):
            with warehouse.connect(read_only=True):
                pass
        monkeypatch.setenv("RECSYS_WAREHOUSE_WAIT_SECONDS", "30")
        with warehouse.connect() as con:
            assert con.execute("select 1").fetchone() == (1,)
    finally:
        holder.kill()


def test_serve_refuses_malformed_access_settings_before_listening(recsys_home, capsys, monkeypatch):
    monkeypatch.setenv("RECSYS_API_TOKEN", "too-short")
    assert cli.main(["serve", "--port", "1"]) == cli.USAGE
    err = capsys.readouterr().err
    assert "recsys serve: RECSYS_API_TOKEN: a token needs at least 16 characters" in err and "too-short" not in err


def test_serve_needs_at_least_one_worker(recsys_home, capsys):
    assert cli.main(["serve", "--port", "1", "--workers", "0"]) == cli.USAGE
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
