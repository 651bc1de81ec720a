"""MLflow under RECSYS_HOME: a SQLite tracking store and registry plus a local artifact folder.

Only ``orchestration`` talks to MLflow; ``recmodels`` returns (model, metrics, params) and writes safe formats
(state dicts, JSON, LightGBM text) into a folder that is logged here as the run's ``model`` artifact and
registered as a new model version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.store.paths import recsys_paths


@dataclass(frozen=True)
class MLflowTracking:
    """Where runs, metrics, artifacts and registered models go (default: SQLite + folder under RECSYS_HOME).

    ``home``: the state folder (None: ``$RECSYS_HOME`` or ./.recsys); ``tracking_uri``: any MLflow tracking URI
    (None: ``$MLFLOW_TRACKING_URI``, else SQLite under ``home``); ``experiment``: the one every training run joins.
    Both defaults are read when used, never when this object is built.
    """

    home: str | None = None
    tracking_uri: str | None = None
    experiment: str = "recsys"

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
            return self.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
        folder = recsys_paths(self.home).ensure().mlflow_dir
        return f"sqlite:///{folder / 'mlflow.db'}"

    def client(self) -> Any:
        import mlflow

        users_setting = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.resolved_tracking_uri())
        # set_tracking_uri also exports MLFLOW_TRACKING_URI; put the user's value back, or the next tracking
        # object in this process (another RECSYS_HOME) would mistake ours for a user's choice.
        if users_setting is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = users_setting
        return mlflow.MlflowClient()

    def experiment_id(self) -> str:
        client = self.client()
        existing = client.get_experiment_by_name(self.experiment)
        if existing is not None:
            return existing.experiment_id
        # Without an explicit location MLflow writes artifacts to ./mlruns of whatever folder the process runs in.
        artifacts = (recsys_paths(self.home).ensure().mlflow_dir / "artifacts").as_uri()
        return client.create_experiment(self.experiment, artifact_location=artifacts)

    @contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[Any]:
        import mlflow

        experiment_id = self.experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {})) as run:
            yield run

    def register_folder(self, run: Any, folder: Path, model_name: str, tags: Mapping[str, str] | None = None) -> Any:
        """Log ``folder`` as the run's ``model`` artifact and register it as a new version of ``model_name``.

        MLflow 3's ``register_model`` wants a flavour-specific logged model; a plain folder of safe files is
        registered with the client's lower-level ``create_model_version`` instead.
        """
        import mlflow

        client = self.client()
        mlflow.log_artifacts(str(folder), artifact_path="model")
        if client.search_registered_models(filter_string=f"name = '{model_name}'") == []:
            client.create_registered_model(model_name)
        return client.create_model_version(
            model_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=dict(tags or {})
        )


def mlflow_metric_name(metric: str) -> str:
    """``metric`` as an MLflow metric name, which allows none of ``@``, ``/`` and ``+`` (``ndcg@10`` -> ``ndcg_10``)."""
    return metric.replace("@", "_").replace("/", "_").replace("+", "_")
