"""MLflow under RECSYS_HOME: a SQLite tracking store and registry plus a local artifact folder, or the
tracking store and registry on the PostgreSQL server of ``RECSYS_POSTGRES_URL`` (artifacts still in a folder).

Only ``orchestration`` talks to MLflow; ``recmodels`` returns (model, metrics, params) and writes safe formats
(state dicts, JSON, LightGBM text) into a folder that is logged here as the run's ``model`` artifact and
registered as a new model version.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.store.paths import recsys_paths
from orchestration.store.postgres import ensure_database, parse_postgres_url, postgres_url

DEFAULT_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` listens unless told otherwise
UI_URL_VARIABLE = "RECSYS_MLFLOW_UI_URL"
# The experiment's kind decides the MLflow UI's first view: training runs, not the GenAI trace panels.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # what the UI shows as a run's description
# A folder (or any MLflow artifact URI) for new experiments' artifacts; machines sharing one tracking store need
# one they can all read, as a serving host loads the champion's files from there.
ARTIFACTS_VARIABLE = "RECSYS_MLFLOW_ARTIFACTS"


@dataclass(frozen=True)
class MLflowTracking:
    """Where runs, metrics, artifacts and registered models go (default: SQLite + folder under RECSYS_HOME).

    ``home``: the state folder (None: ``$RECSYS_HOME`` or ./.recsys); ``tracking_uri``: any MLflow tracking URI
    (None: ``$MLFLOW_TRACKING_URI``, else MLflow's database beside ``$RECSYS_POSTGRES_URL``'s, else SQLite under
    ``home``); ``experiment``: the one every training run joins;
    ``ui_url``: the MLflow UI that links point at (None: ``$RECSYS_MLFLOW_UI_URL``, else ``DEFAULT_UI_URL``).
    The defaults are read when used, never when this object is built.
    """

    home: str | None = None
    tracking_uri: str | None = None
    experiment: str = "recsys"
    ui_url: str | None = None

    def resolved_ui_url(self) -> str:
        return (self.ui_url or os.environ.get(UI_URL_VARIABLE) or DEFAULT_UI_URL).rstrip("/")

    def run_url(self, run: Any) -> str:
        """The MLflow UI page of ``run`` (an MLflow ``Run``)."""
        return f"{self.resolved_ui_url()}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"

    def model_version_url(self, model_name: str, version: int | str) -> str:
        return f"{self.resolved_ui_url()}/#/models/{model_name}/versions/{version}"

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
            return self.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
        server = postgres_url()
        if server is not None:
            return _mlflow_database(server.url)
        folder = recsys_paths(self.home).ensure().mlflow_dir
        return f"sqlite:///{folder / 'mlflow.db'}"

    def artifact_location(self) -> str:
        """Where a new experiment keeps its artifacts: ``$RECSYS_MLFLOW_ARTIFACTS`` (a folder or a URI), else
        ``mlflow/artifacts`` under ``home``. An existing experiment keeps the location it was created with."""
        chosen = os.environ.get(ARTIFACTS_VARIABLE, "").strip()
        if "://" in chosen:
            return chosen
        if chosen:
            return Path(chosen).expanduser().resolve().as_uri()
        return (recsys_paths(self.home).ensure().mlflow_dir / "artifacts").as_uri()

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
            if existing.tags.get(EXPERIMENT_KIND_TAG) is None:  # made by an older version, or by hand
                client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return existing.experiment_id
        # Without an explicit location MLflow writes artifacts to ./mlruns of whatever folder the process runs in.
        return client.create_experiment(self.experiment, artifact_location=self.artifact_location(),
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})

    @contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, str] | None = None, description: str | None = None
                  ) -> Iterator[Any]:
        import mlflow

        experiment_id = self.experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}),
                              description=description) as run:
            yield run

    def log_data_version(self, warehouse_uri: str, table: str, data_version: str, context: str) -> None:
        """Record in the active run which data it read: ``table`` of the warehouse at ``data_version``
        (the marts' fingerprint), as an MLflow input dataset, so the UI shows it beside the run."""
        import mlflow
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and warns that the URI is ambiguous; both are the same.
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(warehouse_uri)
        mlflow.log_input(MetaDataset(source, name=table, digest=data_version), context=context)

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


@functools.cache
def _mlflow_database(server_url: str) -> str:
    """MLflow's tracking URI on the server of ``server_url``, its database created on first use (once a process)."""
    server = parse_postgres_url(server_url)
    store = server.mlflow()
    ensure_database(server, store.database)
    return store.sqlalchemy_url


def register_pyfunc(folder: Path, model_name: str, code_file: Path, artifact_key: str, signature: Any,
                    input_example: Any, tags: Mapping[str, str] | None = None) -> Any:
    """Log ``folder`` as an MLflow 3 ``LoggedModel`` of the active ``run`` (a pyfunc "from code": ``code_file``
    defines the model, ``folder`` is its ``artifact_key`` artifact) with ``signature``, and register it as a new
    version of ``model_name``. Returns the version."""
    import importlib.metadata

    import mlflow

    # The model's code is this project: loading the bundle elsewhere needs this package at this version.
    requirement = f"recsys=={importlib.metadata.version('recsys')}"
    with warnings.catch_warnings():
        # MLflow checks the example against the signature by loading and calling the model: a real test of the
        # logged files. Its hint that type hints could infer the signature does not apply: it is given.
        warnings.filterwarnings("ignore", message=".*type hint.*")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code_file), artifacts={artifact_key: str(folder)}, signature=signature,
            input_example=input_example, pip_requirements=[requirement],
        )
    return mlflow.register_model(info.model_uri, model_name, tags=dict(tags or {}))


def mlflow_metric_name(*parts: str) -> str:
    """An MLflow metric name from ``parts`` joined by ``/``, which the UI groups by (``test``, ``ndcg@10`` ->
    ``test/ndcg_10``); MLflow allows neither ``@`` nor ``+`` in a name."""
    return "/".join(part.replace("@", "_").replace("+", "_").replace("/", "_") for part in parts)
