"""The executor and the instance's concurrency settings on the single-file warehouse and on a shared one."""

from __future__ import annotations

import importlib

import dagster as dg
import pytest

from orchestration.apps.instance import INSTANCE_YAML, ensure_dagster_home

DUCKLAKE = "ducklake+postgresql://recsys@127.0.0.1:5432/lake?data_path=/srv/lake"


@pytest.fixture(autouse=True)
def no_settings(monkeypatch):
    for variable in ("RECSYS_WAREHOUSE", "RECSYS_POSTGRES_URL", "RECSYS_MAX_CONCURRENT_RUNS",
                     "RECSYS_MAX_CONCURRENT_STEPS", "DAGSTER_HOME"):
        monkeypatch.delenv(variable, raising=False)


def test_the_definitions_run_in_process_unless_the_warehouse_is_shared(monkeypatch):
    from orchestration import definitions

    assert definitions.defs.executor is dg.in_process_executor
    monkeypatch.setenv("RECSYS_WAREHOUSE", DUCKLAKE)
    monkeypatch.setenv("RECSYS_MAX_CONCURRENT_STEPS", "3")
    try:
        # The definitions read the setting when they load, as a code location loads them.
        executor = importlib.reload(definitions).defs.executor
    finally:
        monkeypatch.undo()
        importlib.reload(definitions)
    assert executor.name == "multiprocess"
    assert executor.config_schema.resolve_config({}).value["config"]["max_concurrent"] == 3
    assert definitions.defs.executor is dg.in_process_executor


def test_the_embedded_default_is_unchanged(tmp_path):
    home = ensure_dagster_home(tmp_path / "home")
    assert (home / "dagster.yaml").read_text() == INSTANCE_YAML
    instance = dg.DagsterInstance.from_config(str(home))
    pools = instance.get_concurrency_config().pool_config
    # No pool limit: the writers' pools claim nothing, so the in-process runs behave as before pools.
    assert pools.default_pool_limit is None and pools.pool_granularity is None
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1


def test_a_shared_warehouse_allows_several_runs_and_one_step_per_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_WAREHOUSE", DUCKLAKE)
    monkeypatch.setenv("RECSYS_MAX_CONCURRENT_RUNS", "6")
    home = ensure_dagster_home(tmp_path / "home")
    text = (home / "dagster.yaml").read_text()
    assert "run_queue:" not in text  # Dagster refuses its max_concurrent_runs beside concurrency: pools
    config = dg.DagsterInstance.from_config(str(home)).get_concurrency_config()
    assert config.run_queue_config.max_concurrent_runs == 6
    assert config.pool_config.default_pool_limit == 1 and config.pool_config.pool_granularity.value == "op"


