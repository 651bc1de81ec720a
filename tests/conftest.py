"""Shared fixtures: every test that touches state gets its own RECSYS_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
