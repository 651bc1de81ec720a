"""Where the project keeps its state.

Everything mutable lives under one folder, ``RECSYS_HOME`` (default ``./.recsys``): the DuckDB
warehouse, the Dagster instance, the MLflow store, model artifacts and caches. Deleting it resets the project.
Functions here read the environment when called, never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".recsys"


@dataclass(frozen=True)
class RecsysPaths:
    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def sources_dir(self) -> Path:
        """Files the pipeline generates as inputs (the synthetic shop)."""
        return self.home / "sources"

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def artifacts_dir(self) -> Path:
        """Files the model assets hand to each other: splits, fitted models, training checkpoints."""
        return self.home / "artifacts"

    @property
    def artifacts(self) -> "ArtifactPaths":
        return ArtifactPaths(self.artifacts_dir)

    def ensure(self) -> "RecsysPaths":
        for folder in (self.home, self.dagster_home, self.mlflow_dir, self.sources_dir, self.cache_dir, self.artifacts_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self



@dataclass(frozen=True)
class ArtifactPaths:
    """Where each model asset writes, below one root (``RecsysPaths.artifacts_dir``)."""

    root: Path

    @property
    def split_file(self) -> Path:
        return self.root / "user_sequences" / "split.npz"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def sasrec_dir(self, phase: str) -> Path:
        """The test-phase model is the registered one; the validation-phase one is kept for evaluation."""
        return self.models_dir / ("sasrec" if phase == "test" else f"sasrec-{phase}")

    def baselines_dir(self, phase: str) -> Path:
        return self.models_dir / "baselines" / phase

    def checkpoint_dir(self, key: str) -> Path:
        return self.root / "checkpoints" / "sasrec" / key


def recsys_paths(home: str | os.PathLike | None = None) -> RecsysPaths:
    """Paths under ``home``, else ``$RECSYS_HOME``, else ``./.recsys``; always absolute."""
    chosen = home or os.environ.get("RECSYS_HOME") or DEFAULT_HOME
    return RecsysPaths(Path(chosen).expanduser().resolve())


def env_float(name: str, default: float) -> float:
    """``$name`` as a number, ``default`` when unset or blank; a clear error when it is not a number."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number (default {default:g}).") from None


