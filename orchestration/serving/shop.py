"""The shop's data as the service reads it: the warehouse's events and catalogue in one bundle's item ids.

Data is read from the warehouse once, read-only, and the connection closed, so a running service never holds
DuckDB's single writer lock. Features are computed as of one second after the newest event the warehouse holds,
the same point-in-time rule as in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from orchestration.registry.bundle import Bundle
from orchestration.store.embedding_cache import read_item_embeddings
from orchestration.store.marts import MARTS_SCHEMA, mart_fingerprint, read_interactions
from recmodels.ranking import purchase_events
from recmodels.ranking.behaviour import behaviour_events, no_behaviour
from recmodels.sequences import EVENT_TYPES, token_histories
from recmodels.similarity import unit_rows

EVENT_ID = "event_id"  # fct_interactions' id of an event posted to the API (null for other sources)


def model_histories(bundle: Bundle, events: pd.DataFrame, behaviour: pd.DataFrame,
                    as_tokens: bool | None = None) -> dict[str, np.ndarray]:
    """Per user key, the history the bundle's models read: purchases, with views, carts and favourites as tokens
    where the models learned from them (``TwoStageConfig.sequence_behaviour``), oldest first. ``as_tokens``: whether
    the shop's histories are tokens (default: where the models read behaviour and there is some), for a caller
    that passes one customer's events."""
    if as_tokens is None:
        as_tokens = bundle.recommender.config.sequence_behaviour and len(behaviour) > 0
    if not as_tokens:
        items = events["item"].to_numpy(np.int64)  # in the marts' order, as before views existed
        return {key: items[rows] for key, rows in events.groupby("user_key", sort=False).indices.items()}
    columns = ["user_key", "item", "occurred_at", "event_type"]
    merged = pd.concat([events.assign(event_type=EVENT_TYPES[0])[columns], behaviour[columns]], ignore_index=True)
    return token_histories(merged, len(bundle.item_ids))


def marts_version(con) -> str:
    """The clean marts' content fingerprint: the same data gives the same version."""
    return mart_fingerprint(con)["version"]


def _event_ids(con) -> frozenset[str] | None:
    """The ids of the events posted to the API that the marts hold; None when fct_interactions has no such column
    (marts built before events were posted)."""
    columns = {row[0] for row in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [MARTS_SCHEMA, "fct_interactions"]).fetchall()}
    if EVENT_ID not in columns:
        return None
    rows = con.execute(f"select distinct {EVENT_ID} from {MARTS_SCHEMA}.fct_interactions "
                       f"where {EVENT_ID} is not null").fetchall()
    return frozenset(str(row[0]) for row in rows)


@dataclass(frozen=True)
class ShopData:
    """The warehouse's purchases and catalogue, in one bundle's item ids."""

    events: pd.DataFrame  # purchase_events layout, internal ids
    event_rows: dict[str, np.ndarray]  # user key -> positions of its events in ``events``, oldest first
    histories: dict[str, np.ndarray]  # user key -> internal ids, oldest first
    catalogue: pd.DataFrame  # item_id -> title, description (every catalogue item, known to the bundle or not)
    text: dict[str, np.ndarray]  # item_id -> unit text vector, for items outside the bundle (cold start)
    as_of: pd.Timestamp  # features are computed as of this time
    # Every known customer's key (marts.dim_users), with purchases or not: one who only viewed or carted is known too.
    # Anonymous visitors' sessions are not customers: nobody asks for them again, so the batch leaves them out.
    customers: tuple[str, ...] = ()
    behaviour: pd.DataFrame = field(default_factory=no_behaviour)  # views, carts, favourites (behaviour_events)
    behaviour_rows: dict[str, np.ndarray] = field(default_factory=dict)  # user key -> positions in ``behaviour``
    version: str | None = None  # mart_fingerprint of the marts it was read from: a change means new data
    # The ids of the posted events the marts hold (fct_interactions.event_id); None where the marts have no such
    # column. Events recorded live are kept over new data unless it holds them already.
    event_ids: frozenset[str] | None = None

    @property
    def newest(self) -> pd.Timestamp:
        """The newest event's time: ``as_of`` is one second after it."""
        return self.as_of - pd.Timedelta(seconds=1)

    @classmethod
    def read(cls, warehouse, bundle: Bundle) -> ShopData:
        with warehouse.connect(read_only=True) as con:
            interactions = read_interactions(con)
            catalogue = con.execute("select item_id, title, description from marts.dim_items").df()
            customers = tuple(row[0] for row in con.execute(
                "select user_id from marts.dim_users where not is_anonymous order by user_id").fetchall())
            version = marts_version(con)
            event_ids = _event_ids(con)
            try:
                embedded, vectors = read_item_embeddings(con)
            except duckdb.CatalogException:  # no embeddings table yet: the service ranks, without text-only items
                embedded, vectors = pd.DataFrame({"item_id": []}), np.zeros((0, 1), np.float32)
        events = purchase_events(interactions, bundle.item_ids)
        event_rows = events.groupby("user_key", sort=False).indices
        behaviour = behaviour_events(interactions, bundle.item_ids)
        histories = model_histories(bundle, events, behaviour)
        unit = unit_rows(vectors)
        text = {str(item): unit[i] for i, item in enumerate(embedded["item_id"]) if np.any(unit[i])}
        newest = pd.to_datetime(interactions["occurred_at"]).max() if len(interactions) else pd.Timestamp.now()
        return cls(events, event_rows, histories, catalogue.set_index(catalogue["item_id"].astype(str)), text,
                   newest + pd.Timedelta(seconds=1), customers, behaviour,
                   behaviour.groupby("user_key", sort=False).indices, version, event_ids)
