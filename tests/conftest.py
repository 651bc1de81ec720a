"""Shared fixtures: every test that touches state gets its own RECSYS_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recmodels.presets import SHORT_WINDOWS, SMOKE
from tests.servers import postgres_server, redis_server  # noqa: F401  (fixtures for the scale-out tests)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ONLINE_RETAIL_CSV = SHARED_DATA / "online_retail" / "online_retail.csv.gz"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def require_shared_data(path: Path = ONLINE_RETAIL_CSV) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (see ../shared/data/*/PROVENANCE.md)")
    return path


@pytest.fixture
def recsys_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "recsys-home"
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for variable in ("RECSYS_SOURCE", "RECSYS_DATA", "RECSYS_WAREHOUSE"):
        monkeypatch.delenv(variable, raising=False)
    return home


PROMOTED_SHOP = {"synthetic_users": 120, "synthetic_items": 60, "synthetic_days": 60, "synthetic_seed": 7}
PROMOTED_RUN_CONFIG = {
    "ops": {
        "user_sequences": {"config": {"test_days": SHORT_WINDOWS.test_days,
                                      "validation_days": SHORT_WINDOWS.validation_days}},
        "sasrec_model": {"config": {"epochs": SMOKE.train.epochs, "hidden_size": SMOKE.model.hidden_size,
                                    "num_threads": SMOKE.train.num_threads}},
        "user_recommendations": {"config": {"k": 5}},
    }
}


@pytest.fixture(scope="session")
def promoted(tmp_path_factory):
    """(home, run result): the whole graph on a small synthetic shop, with champion version 1 and k = 5 batch
    recommendations. Built once per session and shared, so a test that moves the champion must move it back."""
    import types

    import dagster as dg

    from orchestration.apps.runner import materialize
    from orchestration.defs.resources import DataSourceResource, MLflowResource, WarehouseResource

    home = tmp_path_factory.mktemp("promoted") / "recsys-home"
    with pytest.MonkeyPatch.context() as patch:  # only while building: tests pass the home explicitly
        patch.setenv("RECSYS_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("RECSYS_PSEUDONYMIZATION_KEY", raising=False)
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        resources = {"warehouse": WarehouseResource(home=str(home)), "mlflow": MLflowResource(home=str(home)),
                     "data_source": DataSourceResource(source="synthetic", **PROMOTED_SHOP)}
        result = materialize(None, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                             run_config=PROMOTED_RUN_CONFIG, log_level="WARNING", stdout_log=home / "dbt.log")
    assert result.success
    return types.SimpleNamespace(home=home, result=result)
