"""Dagster's instance and MLflow on a real PostgreSQL server (loopback) when RECSYS_POSTGRES_URL is set."""

from __future__ import annotations

import threading
import time

import dagster as dg
import psycopg2
import pytest

from orchestration.apps.cli import USAGE, main
from orchestration.apps.instance import ensure_dagster_home
from orchestration.registry.tracking import MLflowTracking
from orchestration.store.postgres import PostgresSettingError, ensure_database, parse_postgres_url


HOLD_SECONDS = 2.0


@dg.asset(pool="trivial")
def trivial() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


def _tables(url: str) -> set[str]:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return {row[0] for row in cursor.fetchall()}


@pytest.fixture
def postgres_home(postgres_server, request, tmp_path, monkeypatch):
    """(RECSYS_HOME, Dagster's database URL) with RECSYS_POSTGRES_URL set to a fresh database."""
    url = postgres_server.create_database(request.node.name.lower().replace("[", "_").replace("]", ""))
    for variable in ("RECSYS_WAREHOUSE", "MLFLOW_TRACKING_URI", "RECSYS_MLFLOW_ARTIFACTS", "DAGSTER_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECSYS_POSTGRES_URL", url)
    return tmp_path / "home", url


def test_the_instance_stores_runs_and_materializations_in_postgres(postgres_home):
    home, url = postgres_home
    instance = dg.DagsterInstance.from_config(str(ensure_dagster_home(home)))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    result = dg.materialize([trivial], instance=instance)
    assert result.success
    # A second instance from the same file reads what the first wrote: it is in the server, not in this process.
    again = dg.DagsterInstance.from_config(str(home / "dagster"))
    event = again.get_latest_materialization_event(dg.AssetKey("trivial"))
    assert event.run_id == result.run_id and event.asset_materialization.metadata["rows"].value == 3
    assert again.get_run_by_id(result.run_id).is_success
    assert {"runs", "event_logs", "concurrency_limits"} <= _tables(url)


def test_a_shared_warehouse_limits_each_pool_to_one_step(postgres_home, monkeypatch):
    home, _ = postgres_home
    monkeypatch.setenv("RECSYS_WAREHOUSE", "ducklake+postgresql://recsys@127.0.0.1/lake?data_path=/tmp/lake")
    instance = dg.DagsterInstance.from_config(str(ensure_dagster_home(home)))
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("trivial")
    # Another run holds the pool's one slot for a while: this run's step waits for it, then takes it.
    assert storage.claim_concurrency_slot("trivial", "other-run", "trivial").is_claimed
    threading.Timer(HOLD_SECONDS, storage.free_concurrency_slot_for_step, ("other-run", "trivial")).start()
    started = time.monotonic()
    assert dg.materialize([trivial], instance=instance).success
    assert time.monotonic() - started >= HOLD_SECONDS
    (pool,) = [pool for pool in storage.get_pool_limits() if pool.name == "trivial"]
    assert pool.limit == 1 and pool.from_default
    assert storage.get_concurrency_info("trivial").active_slot_count == 0  # given back when the step ended


def test_pool_limits_are_set_explicitly_once_so_two_first_claims_cannot_race(postgres_home, monkeypatch):
    from orchestration.apps.instance import ensure_pool_limits

    home, _ = postgres_home
    monkeypatch.setenv("RECSYS_WAREHOUSE", "ducklake+postgresql://recsys@127.0.0.1/lake?data_path=/tmp/lake")
    instance = dg.DagsterInstance.from_config(str(ensure_dagster_home(home)))
    # Two processes preparing at once: both may try; afterwards every pool has exactly one explicit limit.
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_pool_limits(instance, ["a_pool", "b_pool"])))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {pool for result in results for pool in result} == {"a_pool", "b_pool"}
    limits = {pool.name: (pool.limit, pool.from_default) for pool in instance.event_log_storage.get_pool_limits()}
    assert limits == {"a_pool": (1, False), "b_pool": (1, False)}
    assert ensure_pool_limits(instance, ["a_pool", "b_pool"]) == []
    # With explicit limits a first claim does not create the pool's row, where Dagster's insert can race.
    assert instance.event_log_storage.claim_concurrency_slot("a_pool", "run-1", "step").is_claimed


def test_mlflow_logs_and_registers_in_its_own_database(postgres_home, tmp_path):
    home, url = postgres_home
    tracking = MLflowTracking(home=str(home), experiment="pg")
    assert tracking.resolved_tracking_uri() == parse_postgres_url(url).mlflow().sqlalchemy_url
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8}\n')
    with tracking.start_run("trained") as run:
        tracking.client().log_metric(run.info.run_id, "ndcg_10", 0.25)
        version = tracking.register_folder(run, folder, "pg_model", tags={"kind": "test"})
    # A new tracking object (as another process would build) reads it back from the server.
    client = MLflowTracking(home=str(home), experiment="pg").client()
    stored = client.get_model_version("pg_model", version.version)
    assert stored.run_id == run.info.run_id and stored.tags == {"kind": "test"}
    assert client.get_run(run.info.run_id).data.metrics == {"ndcg_10": 0.25}
    assert run.info.artifact_uri.startswith((home / "mlflow" / "artifacts").as_uri())
    mlflow_tables, dagster_tables = _tables(parse_postgres_url(url).mlflow().url), _tables(url)
    assert "registered_models" in mlflow_tables and "registered_models" not in dagster_tables


def test_mlflow_database_that_cannot_be_created_is_one_clear_error(postgres_server):
    admin = postgres_server.create_database("no_createdb")
    with psycopg2.connect(admin) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE ROLE plain LOGIN NOCREATEDB")
    plain = parse_postgres_url(admin.replace(f"{postgres_server.user}@", "plain@"))
    with pytest.raises(PostgresSettingError, match=r"'no_createdb_mlflow' is missing and could not be created "
                                                   r"\(permission denied.*grant the user CREATEDB"):
        ensure_database(plain, plain.mlflow().database)


def test_a_bad_url_is_one_line_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RECSYS_POSTGRES_URL", "postgresql://recsys@127.0.0.1:99999/recsys")
    assert main(["--home", str(tmp_path), "champion"]) == USAGE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("recsys champion: RECSYS_POSTGRES_URL='postgresql://recsys@127.0.0.1:99999/recsys' is "
                           "not valid") and "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE" in line
