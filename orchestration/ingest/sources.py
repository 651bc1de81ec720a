"""Turn the configured data source into raw loads (plain helpers, no Dagster)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb

from orchestration.ingest import (
    IngestError,
    LoadResult,
    ensure_raw_schema,
    load_interactions,
    load_items,
    load_online_retail,
    load_source,
)
from orchestration.ingest.synthetic import SyntheticShopConfig, SyntheticShopFiles, write_synthetic_shop

SOURCE_KINDS = ("synthetic", "online_retail", "generic")


def source_kind(configured: str | None = None) -> str:
    """``configured``, else ``$RECSYS_SOURCE``, else synthetic; one of ``SOURCE_KINDS``."""
    kind = (configured or os.environ.get("RECSYS_SOURCE") or "synthetic").strip().lower()
    if kind not in SOURCE_KINDS:
        raise ValueError(f"Unknown data source {kind!r} (from config or RECSYS_SOURCE); expected one of {', '.join(SOURCE_KINDS)}.")
    return kind


# The behaviours an event may record; transforms/dbt_project.yml's var event_types lists the names each has.
BEHAVIOURS = ("view", "cart", "favourite", "purchase")


def shop_event_types(configured: str | None = None) -> dict[str, str]:
    """A shop's own event names and the behaviour each stands for, from ``configured`` or ``$RECSYS_EVENT_TYPES``:
    comma-separated ``name=behaviour`` pairs (``click=view,buy=purchase``); empty when neither is set."""
    value = configured if configured is not None else os.environ.get("RECSYS_EVENT_TYPES", "")
    names = {}
    for pair in filter(None, (part.strip() for part in value.split(","))):
        name, _, behaviour = (text.strip().lower() for text in pair.partition("="))
        if not name or behaviour not in BEHAVIOURS:
            raise ValueError(f"Event type mapping {pair!r} (from config or RECSYS_EVENT_TYPES): expected "
                             f"name=behaviour with a behaviour among {', '.join(BEHAVIOURS)}, e.g. 'click=view,buy=purchase'.")
        names[name] = behaviour
    return names


def source_data_path(configured: str | None = None) -> Path | None:
    """The file or folder to ingest: ``configured``, else ``$RECSYS_DATA``; None when neither is set."""
    value = configured or os.environ.get("RECSYS_DATA")
    return Path(value).expanduser().resolve() if value else None


def synthetic_config(overrides: dict[str, int] | None = None) -> SyntheticShopConfig:
    return dataclasses.replace(SyntheticShopConfig(), **(overrides or {}))


def materialize_synthetic_shop(sources_dir: Path, config: SyntheticShopConfig) -> SyntheticShopFiles:
    """Write the synthetic shop once per configuration; the same config reuses the same files.

    The folder name is a hash of the full config, so a rerun hands ingest byte-identical files and
    ingest's content-hash idempotency turns it into a no-op. Files are written to a scratch folder and
    renamed into place, so an interrupted run never leaves a half-written shop behind.
    """
    fingerprint = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True, default=str).encode()).hexdigest()
    target = sources_dir / f"synthetic-{fingerprint[:12]}"
    if not (target / "stats.json").exists():
        scratch = target.with_name(target.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        write_synthetic_shop(scratch, config)
        (scratch / "config.json").write_text(json.dumps(dataclasses.asdict(config), sort_keys=True, default=str))
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    interactions = target / "interactions.csv.gz"
    return SyntheticShopFiles(
        directory=target,
        order_lines=target / "order_lines.csv.gz",
        items=target / "items.csv",
        stats=json.loads((target / "stats.json").read_text()),
        interactions=interactions if config.browsing else None,
    )


def ingest_configured_source(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    data_path: Path | None,
    sources_dir: Path,
    synthetic_overrides: dict[str, int] | None = None,
) -> list[LoadResult]:
    """Load whatever the configured source points at into the ``raw`` tables."""
    ensure_raw_schema(con)
    if kind == "synthetic":
        shop = materialize_synthetic_shop(sources_dir, synthetic_config(synthetic_overrides))
        browsing = [] if shop.interactions is None else [load_interactions(con, shop.interactions, "synthetic")]
        return [
            *load_online_retail(con, shop.order_lines, source_kind="synthetic"),
            load_items(con, shop.items, source_kind="synthetic"),
            *browsing,
        ]
    if data_path is None:
        raise IngestError(
            f"The data source {kind!r} needs a file or folder to read, but none was given: set RECSYS_DATA "
            "(or the data_source resource's `data` config) to the path of the shop's export."
        )
    return load_source(con, kind, data_path)
