"""Dagster resources: where the warehouse and the MLflow store are, and which data source feeds them.

Each resource is the configurable face of a plain class or function (``store.warehouse.Warehouse``,
``registry.tracking.MLflowTracking``, ``ingest.sources``, ``store.privacy``), which the serving app and the CLI
use without Dagster. Every setting can come from resource config (UI launchpad, tests) and falls back to the
environment (``RECSYS_HOME``, ``MLFLOW_TRACKING_URI``, ``RECSYS_SOURCE``, ``RECSYS_DATA``,
``RECSYS_PSEUDONYMIZATION_KEY``) when the resource is used, never when this module is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field

from orchestration.ingest.sources import shop_event_types, source_data_path, source_kind
from orchestration.registry.tracking import DEFAULT_UI_URL, UI_URL_VARIABLE, MLflowTracking
from orchestration.store.lake import LAKE_FORM
from orchestration.store.paths import ArtifactPaths, RecsysPaths
from orchestration.store.privacy import pseudonymization_key
from orchestration.store.warehouse import Warehouse

if TYPE_CHECKING:
    from recmodels.text_encoder import EncoderConfig, TextEncoder


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file under RECSYS_HOME (one writer at a time), or a shared DuckLake (many writers)."""

    home: str | None = Field(default=None, description="State folder; default $RECSYS_HOME or ./.recsys.")
    url: str | None = Field(
        default=None, description=f"A shared DuckLake instead of the file: {LAKE_FORM}; default "
        "$RECSYS_WAREHOUSE when it has that form.",
    )

    def warehouse(self) -> Warehouse:
        return Warehouse(self.home, self.url)

    @property
    def paths(self) -> RecsysPaths:
        return self.warehouse().paths

    @property
    def path(self) -> Path:
        return self.warehouse().path

    @property
    def artifacts(self) -> ArtifactPaths:
        return self.warehouse().artifacts

    @contextmanager
    def connect(self, read_only: bool = False, wait: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.warehouse().connect(read_only, wait) as con:
            yield con

    def read_table(self, relation: str) -> pd.DataFrame:
        return self.warehouse().read_table(relation)

    def write_table(self, relation: str, frame: pd.DataFrame) -> int:
        return self.warehouse().write_table(relation, frame)


class MLflowResource(dg.ConfigurableResource):
    """Where runs, metrics, artifacts and registered models go (default: SQLite + folder under RECSYS_HOME)."""

    home: str | None = Field(default=None, description="State folder; default $RECSYS_HOME or ./.recsys.")
    tracking_uri: str | None = Field(
        default=None, description="Any MLflow tracking URI; default $MLFLOW_TRACKING_URI, else a database beside "
                                  "$RECSYS_POSTGRES_URL's, else SQLite under RECSYS_HOME."
    )
    experiment: str = Field(default="recsys", description="MLflow experiment that every training run joins.")
    ui_url: str | None = Field(
        default=None, description=f"MLflow UI that metadata links open; default ${UI_URL_VARIABLE}, else {DEFAULT_UI_URL}."
    )

    def tracking(self) -> MLflowTracking:
        return MLflowTracking(self.home, self.tracking_uri, self.experiment, self.ui_url)

    def run_link(self, run: Any) -> dg.MetadataValue:
        return dg.MetadataValue.url(self.tracking().run_url(run))

    def model_version_link(self, model_name: str, version: int | str) -> dg.MetadataValue:
        return dg.MetadataValue.url(self.tracking().model_version_url(model_name, version))

    def log_data_version(self, warehouse_uri: str, table: str, data_version: str, context: str) -> None:
        self.tracking().log_data_version(warehouse_uri, table, data_version, context)

    def resolved_tracking_uri(self) -> str:
        return self.tracking().resolved_tracking_uri()

    def client(self) -> Any:
        return self.tracking().client()

    def experiment_id(self) -> str:
        return self.tracking().experiment_id()

    @contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, str] | None = None, description: str | None = None
                  ) -> Iterator[Any]:
        with self.tracking().start_run(run_name, tags, description) as run:
            yield run

    def register_folder(self, run: Any, folder: Path, model_name: str, tags: Mapping[str, str] | None = None) -> Any:
        """Log ``folder`` as the run's ``model`` artifact and register it as a new version of ``model_name``."""
        return self.tracking().register_folder(run, folder, model_name, tags)


class DataSourceResource(dg.ConfigurableResource):
    """Which shop data feeds the pipeline: the synthetic shop (default), Online Retail files, or the generic format."""

    source: str | None = Field(default=None, description="synthetic | online_retail | generic; default $RECSYS_SOURCE or synthetic.")
    data: str | None = Field(default=None, description="File or folder to ingest; default $RECSYS_DATA. Unused for synthetic.")
    event_types: str | None = Field(
        default=None, description="The shop's own event names and their behaviours (view, cart, favourite, purchase) "
        "as 'click=view,buy=purchase'; default $RECSYS_EVENT_TYPES. Common names are known already (README).",
    )
    synthetic_users: int | None = Field(default=None, description="Synthetic shop: number of customers.")
    synthetic_items: int | None = Field(default=None, description="Synthetic shop: number of products.")
    synthetic_days: int | None = Field(default=None, description="Synthetic shop: days of history.")
    synthetic_seed: int | None = Field(default=None, description="Synthetic shop: random seed.")

    def kind(self) -> str:
        return source_kind(self.source)

    def data_path(self) -> Path | None:
        return source_data_path(self.data)

    def event_type_names(self) -> dict[str, str]:
        return shop_event_types(self.event_types)

    def synthetic_overrides(self) -> dict[str, int]:
        fields = {
            "n_users": self.synthetic_users,
            "n_items": self.synthetic_items,
            "n_days": self.synthetic_days,
            "seed": self.synthetic_seed,
        }
        return {name: value for name, value in fields.items() if value is not None}


class PrivacyResource(dg.ConfigurableResource):
    """The key of the keyed hash that pseudonymises customer ids in every mart."""

    pseudonymization_key: str | None = Field(
        default=None, description="Default $RECSYS_PSEUDONYMIZATION_KEY, else a development key (logged as a warning)."
    )

    def key(self) -> str:
        return pseudonymization_key(self.pseudonymization_key)


class PromotionGateResource(dg.ConfigurableResource):
    """The blocking checks whose latest results gate promotion: ``definitions.py`` lists every one upstream of
    ``promotion_decision``, so a run that materializes only part of the graph still sees all of them."""

    blocking_checks: list[str] = Field(
        default_factory=list, description="'asset/key:check_name' of each check; any failing one refuses promotion."
    )

    @classmethod
    def upstream_of(cls, gated: dg.AssetsDefinition, assets: list, checks: list) -> PromotionGateResource:
        from orchestration.registry.promotion import blocking_checks_upstream

        ancestors = dg.AssetSelection.assets(gated).upstream().resolve(assets)
        keys = blocking_checks_upstream([*assets, *checks], gated.key, ancestors)
        return cls(blocking_checks=[f"{key.asset_key.to_user_string()}:{key.name}" for key in keys])

    def check_keys(self) -> list[dg.AssetCheckKey]:
        keys = []
        for label in self.blocking_checks:
            asset, _, name = label.rpartition(":")
            keys.append(dg.AssetCheckKey(dg.AssetKey.from_user_string(asset), name))
        return keys


class TextEncoderResource(dg.ConfigurableResource):
    """The BERT-family text encoder; loaded once per process and shared by every asset that embeds text."""

    model: str | None = Field(
        default=None,
        description="Hugging Face model name or local folder; default $RECSYS_TEXT_MODEL, else the packaged all-MiniLM-L6-v2.",
    )
    pooling: str = Field(default="mean", description="mean (over real tokens) or cls.")
    max_length: int = Field(default=128, description="Tokens per text; longer texts are truncated.")
    batch_size: int | None = Field(default=None, description="Texts per forward pass; default 64 on CPU, 512 on CUDA.")
    device: str | None = Field(default=None, description="cpu, cuda, cuda:1...; default CUDA when available.")

    def encoder_config(self) -> "EncoderConfig":
        from recmodels.text_encoder import EncoderConfig

        return EncoderConfig(
            model=self.model or os.environ.get("RECSYS_TEXT_MODEL") or None,
            pooling=self.pooling,
            max_length=self.max_length,
            batch_size=self.batch_size,
            device=self.device,
        )

    def load(self) -> "TextEncoder":
        from recmodels.text_encoder import load_encoder

        return load_encoder(self.encoder_config())
