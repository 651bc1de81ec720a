"""What a service derives from its bundle and data once: the recommender it ranks with and the tables over every
customer's events (co-view evidence, each customer's views and open carts, the item-level features).

The tables are a plain mapping so that a child process that built them (``orchestration.serving.warming``) can
hand them to the serving process as they are, rather than the serving process computing them again beside its
requests.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from orchestration.registry.bundle import Bundle
from orchestration.serving.live import StoredEvents
from orchestration.serving.shop import ShopData
from recmodels.explain import behaviour_evidence_by_user, co_view_similarity
from recmodels.recommender import TwoStageRecommender, item_feature_table

TABLES = ("co_viewed", "evidence", "item_features", "blank_features", "stored_events", "stored_behaviour")


def training_end(spec: dict[str, Any], as_of: pd.Timestamp) -> pd.Timestamp:
    """Where the data a bundle's models learned from ends: its test cut-off, or, where each customer had their own
    (leave-last-basket-out), its last event. Co-view is built from the views before it, as co-purchase (the
    bundle's item-kNN) is from the purchases before it, so both describe the same period."""
    for name in ("test_cutoff", "last_event"):
        try:
            return pd.Timestamp(spec[name])
        except (KeyError, TypeError, ValueError):
            continue
    return as_of


def serving_recommender(bundle: Bundle) -> TwoStageRecommender:
    """The bundle's recommender with each source that has one scoring through ``score_each``: a row's scores then
    never depend on which rows share the call (``SASRec.score_each``); the baselines are row by row already."""
    recommender = bundle.recommender
    sources = {name: getattr(bundle.models[name], "score_each", scorer) for name, scorer in recommender.sources.items()}
    return TwoStageRecommender(sources, recommender.ranker, recommender.config, recommender.item_text,
                               recommender.serves)


def data_tables(recommender: TwoStageRecommender, bundle: Bundle, data: ShopData) -> dict[str, Any]:
    """The ``TABLES`` of ``data``: co-view similarity, every customer's views and open carts (the batch explains
    them all), the item-level features, which read every customer's events (so a request reads only its
    customer's), and the events as arrays a customer's rows are gathered from."""
    n_items = len(bundle.item_ids)
    item_features = item_feature_table(data.events, data.as_of, n_items,
                                       data.behaviour if recommender.config.behaviour else None)
    return {"co_viewed": co_view_similarity(data.behaviour, n_items, training_end(bundle.spec, data.as_of)),
            "evidence": behaviour_evidence_by_user(data.behaviour, data.events),
            "item_features": item_features,
            "blank_features": recommender.blank_features(item_features, data.as_of),
            "stored_events": StoredEvents(data.events), "stored_behaviour": StoredEvents(data.behaviour)}
