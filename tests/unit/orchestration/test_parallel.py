"""The parallel settings, the instance yaml they write and the RECSYS_POSTGRES_URL parser, without a server or an
instance."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from orchestration.apps.instance import (
    INSTANCE_YAML,
    RUN_QUEUE,
    concurrency_block,
    ensure_dagster_home,
    instance_settings,
    merged_instance_yaml,
    storage_block,
)
from orchestration.defs.parallel import (
    DEFAULT_MAX_CONCURRENT_RUNS,
    ConcurrencySettingError,
    max_concurrent_runs,
    run_executor,
    shared_warehouse,
)
from orchestration.store.postgres import EXPECTED_FORM, PostgresSettingError, parse_postgres_url
from tests.conftest import REPO_ROOT

DUCKLAKE = "ducklake+postgresql://recsys@127.0.0.1:5432/lake?data_path=/srv/lake"
SETTINGS = ("RECSYS_WAREHOUSE", "RECSYS_POSTGRES_URL", "RECSYS_MAX_CONCURRENT_RUNS", "RECSYS_MAX_CONCURRENT_STEPS")


@pytest.fixture(autouse=True)
def no_settings(monkeypatch):
    for variable in SETTINGS:
        monkeypatch.delenv(variable, raising=False)


def test_only_a_ducklake_warehouse_is_shared(monkeypatch):
    assert not shared_warehouse()
    monkeypatch.setenv("RECSYS_WAREHOUSE", "/data/warehouse.duckdb")
    assert not shared_warehouse() and max_concurrent_runs() == 1 and run_executor() is dg.in_process_executor
    monkeypatch.setenv("RECSYS_WAREHOUSE", DUCKLAKE)
    assert shared_warehouse() and max_concurrent_runs() == DEFAULT_MAX_CONCURRENT_RUNS
    monkeypatch.setenv("RECSYS_MAX_CONCURRENT_RUNS", "7")
    assert max_concurrent_runs() == 7
    assert run_executor().name == "multiprocess"


@pytest.mark.parametrize("value", ["0", "-2", "four", "1.5"])
def test_a_bad_count_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("RECSYS_WAREHOUSE", DUCKLAKE)
    monkeypatch.setenv("RECSYS_MAX_CONCURRENT_RUNS", value)
    with pytest.raises(ConcurrencySettingError, match=f"RECSYS_MAX_CONCURRENT_RUNS='{value}'.*at least 1"):
        max_concurrent_runs()


def test_blocks_written_here_follow_the_settings_and_hand_edits_stay():
    storage = storage_block("postgresql+psycopg2://recsys@db/recsys")
    shared = {"storage": storage, "concurrency": concurrency_block(4), "telemetry": "telemetry:\n  enabled: false\n"}
    text = merged_instance_yaml(INSTANCE_YAML, shared)
    assert "run_queue:" not in text and storage in text and "max_concurrent_runs: 4" in text
    moved = storage_block("postgresql+psycopg2://recsys@db2:5433/recsys")
    again = merged_instance_yaml(text, {**shared, "storage": moved, "concurrency": concurrency_block(8)})
    assert "max_concurrent_runs: 8" in again and again.count("concurrency:") == 1
    assert moved in again and again.count("storage:") == 1
    back = merged_instance_yaml(again, {"run_queue": RUN_QUEUE})
    assert "storage:" not in back and "concurrency:" not in back and back.count(RUN_QUEUE) == 1
    edited = back.replace("max_concurrent_runs: 1", "max_concurrent_runs: 1\n  tag_concurrency_limits: []")
    assert merged_instance_yaml(edited, {"concurrency": concurrency_block(4)}) == edited + concurrency_block(4)


def test_postgres_settings_add_the_storage_block_with_the_psycopg2_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_POSTGRES_URL", "postgresql://recsys@db.internal/recsys?sslmode=require&x=#1")
    url = "postgresql+psycopg2://recsys@db.internal/recsys?sslmode=require&x=#1"
    assert instance_settings()["storage"] == storage_block(url)
    text = (ensure_dagster_home(tmp_path / "home") / "dagster.yaml").read_text()
    assert yaml.safe_load(text)["storage"] == {"postgres": {"postgres_url": url}}  # '#' and '&' kept


def test_the_mlflow_database_sits_beside_dagsters():
    parsed = parse_postgres_url("postgresql://recsys:pw@db:6543/recsys?sslmode=require")
    assert parsed.mlflow().url == "postgresql://recsys:pw@db:6543/recsys_mlflow?sslmode=require"
    assert parsed.mlflow().database == "recsys_mlflow"


@pytest.mark.parametrize("value", ["mysql://u@h/db", "postgresql://h/db", "postgresql://u@h", "postgres://u@h/db",
                                   "postgresql://u@h:port/db", "postgresql://u@h/a/b", "not a url"])
def test_a_bad_postgres_url_says_what_is_expected(value):
    with pytest.raises(PostgresSettingError) as raised:
        parse_postgres_url(value)
    message = str(raised.value)
    assert message.startswith(f"RECSYS_POSTGRES_URL={value!r} is not valid") and message.endswith(EXPECTED_FORM)
    assert "\n" not in message


def test_a_bad_postgres_url_is_one_line_from_the_instance_command(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, "RECSYS_POSTGRES_URL": "mysql://u@h/db",
           "RECSYS_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster")}
    done = subprocess.run([sys.executable, "-m", "orchestration.apps.instance"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        (f"orchestration.apps.instance: RECSYS_POSTGRES_URL='mysql://u@h/db' is not valid (the scheme must be "
         f"postgresql or postgresql+psycopg2); expected {EXPECTED_FORM}")]
