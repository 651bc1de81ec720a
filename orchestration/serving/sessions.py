"""A session's typed events, when they happened on the service's clock, and the request that ranks them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestration.serving.batching import RankRequest
from orchestration.serving.live import Customer, merged
from recmodels.event_table import EventTable
from recmodels.explain import evidence_of
from recmodels.ranking.behaviour import BEHAVIOURS
from recmodels.recommender import TwoStageConfig
from recmodels.sequences import EVENT_TYPES, behaviour_codes, encode

SESSION_BASKET = "__session__"  # basket_id of a session's purchases

# What a session's events may be, in the order messages list them (purchases, the target, last).
SESSION_EVENT_TYPES = (*BEHAVIOURS, EVENT_TYPES[0])


@dataclass(frozen=True)
class SessionEvent:
    """One event of a session, in the bundle's ids: what the session did to an item, and when."""

    item: int  # internal id
    event_type: str  # one of EVENT_TYPES
    occurred_at: pd.Timestamp | None = None  # None: in the order given


def session_times(events: list[SessionEvent], as_of: pd.Timestamp) -> np.ndarray:
    """When a session's events happened (datetime64[ns]), on the service's clock: a session is ranked as if it had
    just happened, so its newest event is put one second before ``as_of`` (features read events before it) and the
    others keep their distances to it; events without times are one second apart in the order given."""
    given = [e.occurred_at for e in events]
    if not given:
        return np.array([], "datetime64[ns]")
    if all(t is None for t in given):
        times = np.arange(len(events)) * np.timedelta64(1, "s")  # seconds from the first
    elif any(t is None for t in given):
        raise ValueError("timestamp: give every event of a session a timestamp, or none")
    else:
        times = pd.DatetimeIndex([pd.Timestamp(t).tz_convert(None) if pd.Timestamp(t).tzinfo else pd.Timestamp(t)
                                  for t in given]).to_numpy("datetime64[ns]")
    newest = (pd.Timestamp(as_of) - pd.Timedelta(seconds=1)).to_datetime64().astype("datetime64[ns]")
    return (times - times.max() + newest).astype("datetime64[ns]")


@dataclass(frozen=True)
class SessionRows:
    """A session's events as arrays, oldest first, on the service's clock (``session_times``)."""

    items: np.ndarray  # (n,) int64 internal ids
    times: np.ndarray  # (n,) datetime64[ns]
    event_types: np.ndarray  # (n,) object, of SESSION_EVENT_TYPES

    @classmethod
    def placed(cls, events: list[SessionEvent], as_of: pd.Timestamp) -> SessionRows:
        times = session_times(events, as_of)
        order = np.argsort(times, kind="stable")
        return cls(np.array([e.item for e in events], np.int64)[order], times[order],
                   np.array([e.event_type for e in events], dtype=object)[order])

    def table(self, key: str, rows: np.ndarray) -> EventTable:
        """The events at ``rows`` (a mask) as ``behaviour_events`` rows of ``key``, a quantity of 1 each."""
        n = int(rows.sum())
        return EventTable({"user_key": np.full(n, key, dtype=object), "item": self.items[rows],
                           "occurred_at": self.times[rows], "event_type": self.event_types[rows],
                           "quantity": np.ones(n)})

    def history(self, sequence_behaviour: bool, n_items: int) -> np.ndarray:
        """The events as the models read them: tokens of every behaviour where they learned from browsing
        (``TwoStageConfig.sequence_behaviour``); else every event's item, as a session of items always was."""
        if not sequence_behaviour:
            return self.items
        return encode(self.items, behaviour_codes(self.event_types), n_items)


def session_request(customer: Customer, key: str, session: SessionRows, config: TwoStageConfig,
                    item_price: np.ndarray | None, n_items: int, exclude_history: bool
                    ) -> tuple[RankRequest, dict[str, np.ndarray]]:
    """The request that ranks ``customer`` (of ``key``) with ``session``'s events added, and the evidence of its
    explanations (``Explainer.explain``'s viewed, in_cart, bought).

    Purchases are bought at the item's usual price (``item_price``, by internal id); views, carts and favourites
    join the customer's behaviour where the ranker reads it. Frames are built only for what the ranking reads: a
    session of views alone of an anonymous visitor is a request without events, ranked as arrays."""
    bought = session.event_types == EVENT_TYPES[0]
    purchases = customer.events
    if bought.any():
        price = item_price[session.items[bought]] if item_price is not None else np.full(int(bought.sum()), np.nan)
        added = session.table(key, bought).assign(unit_price=price, basket_id=SESSION_BASKET)
        purchases = merged(customer.events, added)
    behaviour = customer.behaviour
    if config.behaviour and not bought.all():
        behaviour = merged(customer.behaviour, session.table(key, ~bought))
    before = customer.behaviour
    viewed, in_cart = evidence_of(
        np.concatenate([before["item"].astype(np.int64), session.items[~bought]]),
        np.concatenate([before["event_type"].astype(object), session.event_types[~bought]]),
        np.concatenate([before["occurred_at"].astype("datetime64[ns]"), session.times[~bought]]),
        purchases["item"].astype(np.int64), purchases["occurred_at"].astype("datetime64[ns]"))
    evidence = {"viewed": viewed, "in_cart": in_cart, "bought": purchases["item"].astype(np.int64)}
    known = customer.history if customer.history is not None else np.array([], np.int64)
    history = np.concatenate([known, session.history(config.sequence_behaviour, n_items)])
    return RankRequest(history, purchases, behaviour, customer.as_of, exclude_history), evidence
