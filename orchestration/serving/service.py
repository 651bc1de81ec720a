"""The champion bundle plus the shop's current data: what batch recommendations, the API and the CLI share.

``RecommendationService`` speaks the shop's own ids: customer ids are pseudonymised exactly as the marts do
(``orchestration.store.privacy``), item ids are the catalogue's. Its data is the warehouse's (``ShopData``) plus
the events recorded since (``record_events``), so a customer's next answer reflects what they just did.

Every answer is ranked by one code path, whatever asked: ``rank_requests`` over a batch-invariant recommender, so a
customer is ranked alike alone, in a micro-batch of concurrent requests or in the batch table. Known customers'
top ``MAX_K`` are kept (``warm`` ranks them all in large batches; a request ranks a missing one and keeps it), so a
request for a customer without new events is a lookup; recording an event drops that customer's answer.

Point in time: a customer's features read the events before one second after the newest event known of them, at
the earliest the data's ``as_of`` (one second after the warehouse's newest event, as in training). Item-level
features (popularity, prices, view counts) and the co-view and co-purchase evidence stay as of the data until it is
read again: aggregates over every customer, which a few live events barely move, and reading them at one time keeps
the answers kept for customers without new events valid.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestration.ingest.event_rules import Event
from orchestration.registry.bundle import Bundle, load_bundle, registered_bundle
from orchestration.registry.promotion import BUNDLE_MODEL, current_champion
from orchestration.serving.answers import Answers, described, explained, popular_top
from orchestration.serving.batching import (
    MicroBatcher,
    Ranked,
    RankRequest,
    is_blank,
    rank_requests,
    single_threaded,
)
from orchestration.serving.live import (
    Customer,
    Recorded,
    RecordedLog,
    Waiting,
    recorded_rows,
    unprocessed,
    with_pending,
)
from orchestration.serving.sessions import SESSION_EVENT_TYPES, SessionEvent, SessionRows, session_request
from orchestration.serving.shop import ShopData
from orchestration.serving.tables import data_tables, serving_recommender
from orchestration.store.privacy import pseudonymize
from recmodels.explain import Explainer, sentence
from recmodels.sequences import PAD, purchased_items
from recmodels.similarity import unit_rows

SESSION_KEY = "__anonymous_session__"  # a user key no pseudonym can take ("u_" + hex)
FALLBACK_SOURCES = ("recent-popularity", "popularity")  # unknown customers get the first one the bundle has
MAX_K = 100  # items an answer holds at most, and what is kept per known customer
WARM_BATCH = 256  # customers per ranking call while warming: the per-call cost spread thin, the memory bounded


class NoChampionError(LookupError):
    """The registry has no champion yet: nothing to serve."""


class RecommendationService:
    """Recommendations, similar items and explanations from one bundle over the warehouse's data and the events
    recorded since. Thread-safe: requests, ``record_events`` and ``warm`` may run concurrently."""

    def __init__(self, bundle: Bundle, data: ShopData, pseudonymization_key: str, version: int | None = None,
                 tables: dict[str, Any] | None = None):
        """``tables``: ``data_tables`` of this bundle and data where they were built already (a child process)."""
        self.bundle = bundle
        self.data = data
        self.key = pseudonymization_key
        self.version = version
        self.recommender = serving_recommender(bundle)
        models, n_items = bundle.models, len(bundle.item_ids)
        item_text = bundle.recommender.item_text
        self.text_unit = None if item_text is None else unit_rows(item_text)
        self.tables = data_tables(self.recommender, bundle, data) if tables is None else tables
        co_bought = models["item-knn"].similarity_ if "item-knn" in models else None
        self.explainer = Explainer(co_bought=co_bought, co_viewed=self.tables["co_viewed"], text_unit=self.text_unit)
        self.evidence = self.tables["evidence"]
        self.fallback = next((name for name in FALLBACK_SOURCES if name in models), None)
        self.item_features, self.blank_features = self.tables["item_features"], self.tables["blank_features"]
        self.answers = Answers(bundle, data.catalogue)
        self.popular_top = popular_top(bundle, self.fallback, self.explainer, n_items)  # every item: explain
        # Two lanes, as rank_requests splits a call: rows without events the ranker reads (sessions) are ranked as
        # arrays, rows with events compute features; batched apart, a customer's recompute never holds up the
        # sessions queued behind it.
        self._lanes = (MicroBatcher(self._rank_requests), MicroBatcher(self._rank_requests))
        self._state = threading.Lock()  # guards what record_events changes
        self._log = RecordedLog()  # what was recorded, in order
        self._sequence = 0  # the next event's number in recording order
        self._event_ids: set[str] = set()  # of the recorded events, so a retried post counts once
        self._waiting = Waiting()  # events recorded since their key's customer was built: it is, when read
        self._fresh: dict[str, Customer] = {}  # user keys with recorded events, as last built
        self._as_of = data.as_of
        self._stop = threading.Event()
        self._stored_events, self._stored_behaviour = self.tables["stored_events"], self.tables["stored_behaviour"]

    # -------------------------------------------------------------------------------------------- loading

    @classmethod
    def from_champion(cls, warehouse, mlflow, pseudonymization_key: str) -> RecommendationService:
        client = mlflow.client()
        champion = current_champion(client)
        if champion is None:
            raise NoChampionError(f"{BUNDLE_MODEL} has no champion yet: run the retrain job (promotion_decision).")
        return cls.from_registry(client, champion["version"], warehouse, pseudonymization_key)

    @classmethod
    def from_registry(cls, client, version: int, warehouse, pseudonymization_key: str) -> RecommendationService:
        folder = registered_bundle(client, version, warehouse.paths)
        return cls.from_folder(folder, warehouse, pseudonymization_key, version)

    @classmethod
    def from_folder(cls, folder: Path, warehouse, pseudonymization_key: str, version: int | None = None
                    ) -> RecommendationService:
        bundle = load_bundle(folder)
        return cls(bundle, ShopData.read(warehouse, bundle), pseudonymization_key, version)

    def carry_over(self, other: RecommendationService, since: int = 0) -> int:
        """Adopt the events ``other`` recorded from sequence number ``since`` on that this service's data does not
        hold yet (a reload replacing ``other``); returns where a later call goes on from."""
        with other._state:
            recorded, following = other._log.since(since), other._sequence
        self.adopt(unprocessed(recorded, self.data))
        return following

    def close(self) -> None:
        """Stop a running ``warm``: the service is being replaced."""
        self._stop.set()

    # ------------------------------------------------------------------------------------------- helpers

    @property
    def as_of(self) -> pd.Timestamp:
        """One second after the newest event known, recorded ones included."""
        return self._as_of

    def user_key(self, shop_customer_id: object) -> str:
        return pseudonymize(shop_customer_id, self.key)

    def title(self, item_id: str | None) -> str | None:
        """The catalogue's title, or None when the catalogue has none."""
        return self.answers.title(item_id)

    def label(self, item_id: str | None) -> str | None:
        """What a shopper is shown for an item: its title, or its id when the catalogue has no title."""
        return self.answers.label(item_id)

    def _check_k(self, k: int) -> int:
        if not 1 <= int(k) <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
        return int(k)

    def _history(self, key: str) -> np.ndarray | None:
        if key in self._fresh or key in self._waiting:
            return self._customer(key).history
        return self.data.histories.get(key)

    def _customer(self, key: str) -> Customer:
        return self._current(key)[0]

    def _current(self, key: str) -> tuple[Customer, int]:
        """A customer with every event recorded so far, and the answers' generation of the key it is current at.
        Rebuilt outside the lock when events wait, and kept only if none were recorded meanwhile."""
        with self._state:
            generation, before, waiting = self.answers.generation(key), self._fresh.get(key), self._waiting.get(key)
            waiting = waiting and waiting.copy()
        customer = before or self._stored(key)
        if waiting:
            customer = with_pending(customer, key, waiting, self.bundle, len(self.data.behaviour) > 0)
            with self._state:
                if self.answers.generation(key) == generation:
                    self._fresh[key] = customer
                    self._waiting.pop(key, None)
        return customer, generation

    def _stored(self, key: str) -> Customer:
        """A customer as the warehouse holds them."""
        data = self.data
        if not any(key in held for held in (data.event_rows, data.behaviour_rows, data.histories, self.evidence)):
            return self._nobody  # an anonymous session's: built once, as every one of them reads it
        viewed, in_cart = self.evidence.get(key, (np.array([], np.int64),) * 2)
        nothing = np.array([], np.int64)
        return Customer(self._stored_events.rows(key, data.event_rows.get(key, nothing)),
                        self._stored_behaviour.rows(key, data.behaviour_rows.get(key, nothing)),
                        data.histories.get(key), {"viewed": viewed, "in_cart": in_cart}, data.as_of)

    @cached_property
    def _nobody(self) -> Customer:
        """A customer the warehouse holds nothing of."""
        nothing = np.array([], np.int64)
        return Customer(self._stored_events.rows(SESSION_KEY, nothing),
                        self._stored_behaviour.rows(SESSION_KEY, nothing), None,
                        {"viewed": nothing, "in_cart": nothing}, self.data.as_of)

    def _rank_requests(self, requests: list[RankRequest]) -> list[Ranked]:
        return rank_requests(self.recommender, requests, len(self.bundle.item_ids), self.item_features,
                             self.blank_features)

    def _ranked(self, request: RankRequest) -> Ranked:
        """Every candidate of one request, best first, ranked together with whatever requests of its lane wait."""
        return self._lanes[not is_blank(self.recommender, request)].submit(request)

    # ------------------------------------------------------------------------------------ recorded events

    def record_events(self, frame: pd.DataFrame | Sequence[Event]) -> int:
        """Add events to what answers read (the API's checked events, or a frame of ``live.RECORDED_COLUMNS``, the
        shop's ids; tz-naive UTC times):
        purchases to the customer's purchases and history, views, carts and favourites to their behaviour, an
        anonymous visitor's under the session's pseudonym, as the marts key them. Each touched customer's kept
        answer is dropped, so their next request ranks again with these events. Returns how many were kept
        (events of unknown items, without any id, or already recorded are not)."""
        with self._state:
            recorded = recorded_rows(frame, self.key, self.bundle, self._sequence)
            self._sequence += len(frame)
            new = recorded.without(self._event_ids, self.data.event_ids)
            self._apply(new)
        return len(new)

    def adopt(self, recorded: Recorded) -> None:
        """Apply events another service recorded (a reload carrying them over)."""
        with self._state:
            self._apply(recorded)

    def recorded(self) -> Recorded:
        """The events recorded here (and carried over), in recording order."""
        with self._state:
            return self._log.joined()

    def _apply(self, recorded: Recorded) -> None:
        """Add ``recorded`` (held ``_state``): each touched key's events wait for its next read, and its kept
        answer is dropped (its generation moves on, so an answer ranked before these events is not kept)."""
        if not len(recorded):
            return
        self._log.append(recorded)
        self._sequence = max(self._sequence, recorded.last_sequence + 1)
        self._event_ids |= recorded.event_ids
        for key in self._waiting.add(recorded):
            self.answers.drop(key)
        self._as_of = max(self._as_of, recorded.newest + pd.Timedelta(seconds=1))

    # ------------------------------------------------------------------------------------- kept answers

    def _answer(self, key: str) -> np.ndarray | None:
        """A customer's top ``MAX_K`` (``TOP`` rows), kept or ranked now and kept; None without a history."""
        top = self.answers.get(key)
        if top is not None or self._history(key) is None:
            return top
        customer, generation = self._current(key)
        if customer.history is None:
            return None
        ranked = self._ranked(_request(customer))
        top = explained(self.explainer, self.bundle, customer.history, ranked.items, ranked.scores, MAX_K,
                        customer.evidence)
        self.answers.keep(key, top, generation)
        return top

    def warm(self, batch_size: int = WARM_BATCH) -> int:
        """Rank every known customer without a kept answer, ``batch_size`` at a time, and keep their top
        ``MAX_K``: afterwards a request for any of them is a lookup. Stops early after ``close``; returns how
        many it ranked. Runs beside requests (each ranking call is a pure function of its inputs)."""
        keys = [key for key in self.data.customers
                if self._history(key) is not None and self.answers.get(key) is None]
        done = 0
        for start in range(0, len(keys), batch_size):
            if self._stop.is_set():
                break
            chunk = [(key, *self._current(key)) for key in keys[start:start + batch_size]]
            chunk = [(key, customer, generation) for key, customer, generation in chunk
                     if customer.history is not None]
            ranked = self._rank_requests([_request(customer) for _, customer, _ in chunk])
            for (key, customer, generation), rows in zip(chunk, ranked):
                top = explained(self.explainer, self.bundle, customer.history, rows.items, rows.scores, MAX_K,
                                customer.evidence)
                self.answers.keep(key, top, generation)
            done += len(chunk)
        return done

    # ----------------------------------------------------------------------------------------- requests

    def popular(self, k: int = 10) -> dict[str, Any]:
        """The items popular now: what a customer without purchases is recommended."""
        return {"strategy": f"fallback:{self.fallback}", "items": self._popular(self._check_k(k))}

    def _popular(self, k: int) -> pd.DataFrame:
        return described(self.answers, self.popular_top[:k])

    def history(self, shop_customer_id: object, n: int = 10) -> dict[str, Any]:
        """A customer's ``n`` latest purchases of catalogue items the model knows, newest first."""
        n = self._check_k(n)
        events = self._customer(self.user_key(shop_customer_id)).events
        latest = events.take(np.arange(len(events) - 1, -1, -1)[:n])
        item_ids = self.bundle.shop_ids(latest["item"])
        items = pd.DataFrame({"item_id": item_ids, "title": [self.label(i) for i in item_ids],
                              "occurred_at": latest["occurred_at"], "quantity": latest["quantity"]})
        return {"user_id": str(shop_customer_id), "known_user": len(events) > 0, "purchases": len(events),
                "items": items}

    def user_top(self, shop_customer_id: object, rank: bool = True) -> tuple[np.ndarray, int | None] | None:
        """(top ``MAX_K`` ``TOP`` rows, history length) of a known customer, (popular rows, None) of an unknown
        one; without ``rank``, None where the answer would have to be ranked, or the customer rebuilt, now."""
        key = self.user_key(shop_customer_id)
        top = self._answer(key) if rank else self.answers.get(key)
        if top is None and not rank and (key in self._waiting or key in self._fresh or key in self.data.histories):
            return None
        history = self._history(key)
        if top is None:
            return None if not rank and history is not None else (self.popular_top, None)
        return top, len(history)

    def recommend_user(self, shop_customer_id: object, k: int = 10) -> dict[str, Any]:
        """A known customer's top ``k`` from their latest history; popularity for an unknown one."""
        k = self._check_k(k)
        top, history_length = self.user_top(shop_customer_id)
        if history_length is None:
            return {"user_id": str(shop_customer_id), "known_user": False, "strategy": f"fallback:{self.fallback}",
                    "items": self._popular(k)}
        return {"user_id": str(shop_customer_id), "known_user": True, "strategy": "two-stage",
                "history_length": history_length, "items": described(self.answers, top[:k])}

    def session_items(self, shop_item_ids: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
        """(internal ids, unknown ids, text-only ids): an item outside the bundle with a description stands in
        through its nearest bundle item by text; one without either is unknown and ignored."""
        internal = self.bundle.internal_ids(shop_item_ids)
        unknown, text_only, mapped = [], [], []
        for item_id, code in zip((str(i) for i in shop_item_ids), internal):
            if code != PAD:
                mapped.append(int(code))
            elif item_id in self.data.text and self.text_unit is not None:
                mapped.append(int(np.argmax(self.text_unit @ self.data.text[item_id])))
                text_only.append(item_id)
            else:
                unknown.append(item_id)
        return np.asarray(mapped, dtype=np.int64), unknown, text_only

    def _session_top(self, request: RankRequest, k: int, evidence: dict[str, np.ndarray],
                     as_rows: bool) -> pd.DataFrame | np.ndarray:
        ranked = self._ranked(request)
        top = explained(self.explainer, self.bundle, request.history, ranked.items, ranked.scores, k, evidence)
        return top if as_rows else described(self.answers, top)

    def _session_popular(self, k: int, as_rows: bool) -> pd.DataFrame | np.ndarray:
        return self.popular_top[:k] if as_rows else self._popular(k)

    def recommend_session(self, shop_item_ids: list[str], k: int = 10, include_seen: bool = False,
                          as_rows: bool = False) -> dict[str, Any]:
        """An anonymous session's top ``k`` from the items it viewed or bought, in order; the session's own items
        only with ``include_seen``. Items as a frame, or with ``as_rows`` as ``TOP`` rows (what the API writes
        out)."""
        k = self._check_k(k)
        history, unknown, text_only = self.session_items(shop_item_ids)
        answer = {"unknown_items": unknown, "text_only_items": text_only}
        if not len(history):
            return {**answer, "strategy": f"fallback:{self.fallback}", "items": self._session_popular(k, as_rows)}
        nobody = self._customer(SESSION_KEY)
        request = RankRequest(history, nobody.events, nobody.behaviour, self.data.as_of, not include_seen)
        # The items may only have been looked at: none of them is said to be bought.
        return {**answer, "strategy": "two-stage",
                "items": self._session_top(request, k, {"bought": np.array([], np.int64)}, as_rows)}

    def session_events(self, events: list[tuple[str, str, Any]]) -> tuple[list[SessionEvent], list[str], list[str]]:
        """(events in the bundle's ids, unknown ids, text-only ids) of a session's (item id, event type, time or
        None) triples; an event of an unknown item is left out, as ``session_items`` leaves the item out."""
        for _, event_type, _ in events:
            if event_type not in SESSION_EVENT_TYPES:
                raise ValueError(f"event_type: unknown value {event_type!r}; expected one of "
                                 f"{', '.join(SESSION_EVENT_TYPES)}")
        kept, unknown, text_only = [], [], []
        codes = self.bundle.internal_ids([str(item_id) for item_id, _, _ in events])  # one look-up for them all
        for (item_id, event_type, occurred_at), code in zip(events, codes):
            if code == PAD:  # outside the bundle: a stand-in by text, or unknown
                mapped, missing, stand_in = self.session_items([item_id])
                unknown += [i for i in missing if i not in unknown]
                text_only += [i for i in stand_in if i not in text_only]
                if not len(mapped):
                    continue
                code = mapped[0]
            kept.append(SessionEvent(int(code), event_type, occurred_at))
        return kept, unknown, text_only

    def recommend_events(self, events: list[tuple[str, str, Any]], k: int = 10, include_seen: bool = False,
                         shop_customer_id: object | None = None, as_rows: bool = False) -> dict[str, Any]:
        """A session's top ``k`` from its typed events: (item id, event type among EVENT_TYPES, time or None),
        in any order. Every event's item feeds the candidate models as a session's items do; the views, carts and
        favourites feed the ranker's behaviour features and the explanations, the purchases its purchase features
        (at the item's usual price) and "bought before". Without ``shop_customer_id`` the session is anonymous;
        with one, it adds to that customer's events (the warehouse's and those recorded). The session's own items
        only with ``include_seen``. ``as_rows`` as for ``recommend_session``."""
        k = self._check_k(k)
        mapped, unknown, text_only = self.session_events(events)
        key = SESSION_KEY if shop_customer_id is None else self.user_key(shop_customer_id)
        customer = self._customer(key)
        known = customer.history if customer.history is not None else np.array([], np.int64)
        answer = {"unknown_items": unknown, "text_only_items": text_only,
                  **({} if shop_customer_id is None else {"user_id": str(shop_customer_id),
                                                          "known_user": len(customer.events) > 0})}
        if not mapped and not len(known):
            return {**answer, "strategy": f"fallback:{self.fallback}", "items": self._session_popular(k, as_rows)}
        session = SessionRows.placed(mapped, customer.as_of)
        prices = self.item_features["item_price"].to_numpy(np.float64) if "item_price" in self.item_features else None
        request, evidence = session_request(customer, key, session, self.recommender.config, prices,
                                            len(self.bundle.item_ids), not include_seen)
        return {**answer, "strategy": "two-stage", "items": self._session_top(request, k, evidence, as_rows)}

    def similar(self, shop_item_id: str, k: int = 10) -> dict[str, Any]:
        """Items like ``shop_item_id``: the mean of co-purchase similarity and text cosine (each in [0, 1])."""
        k = self._check_k(k)
        item_id = str(shop_item_id)
        code = int(self.bundle.internal_ids([item_id])[0])
        n = len(self.bundle.item_ids) + 1
        behaviour = np.zeros(n)
        if code != PAD and self.explainer.co_bought is not None:
            behaviour = self.explainer.co_bought[code].toarray().ravel()
        vector = self.text_unit[code] if code != PAD and self.text_unit is not None else self.data.text.get(item_id)
        text = np.zeros(n) if vector is None or self.text_unit is None else np.clip(self.text_unit @ vector, 0, 1)
        if code == PAD and vector is None:
            raise KeyError(f"item {item_id!r} is neither in the model's catalogue nor has a description")
        score = (behaviour + text) / 2
        score[PAD] = -np.inf
        if code != PAD:
            score[code] = -np.inf  # an item is not similar to itself for this purpose
        order = np.lexsort((np.arange(n), -score))[:k]
        order = order[np.isfinite(score[order])]
        item_ids = self.bundle.shop_ids(order)
        items = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "item_id": item_ids,
                              "title": [self.label(i) for i in item_ids], "score": score[order],
                              "co_purchase": behaviour[order], "text_cosine": text[order]})
        return {"item_id": item_id, "title": self.label(item_id), "known_item": code != PAD, "items": items}

    def explain(self, shop_customer_id: object, shop_item_id: str) -> dict[str, Any]:
        """Why (or why not) ``shop_item_id`` is recommended to a customer: its rank, score and explanation as
        ``recommend_user`` gives them, and the ranker's features for that pair (none for the popularity fallback)."""
        key = self.user_key(shop_customer_id)
        customer = self._customer(key)
        item_id = str(shop_item_id)
        code = int(self.bundle.internal_ids([item_id])[0])
        if code == PAD:
            raise KeyError(f"item {item_id!r} is not in the model's catalogue")
        rank = score = None
        features: dict[str, float] = {}
        if customer.history is None:  # recommend_user's fallback: every item has its place in the popularity order
            order, scores = self.popular_top["item"], self.popular_top["score"]
            hit = np.flatnonzero(order == code)
            rank, score = (int(hit[0]) + 1, float(scores[hit[0]])) if len(hit) else (None, None)
        else:
            found = self._ranked(_request(customer)).features_of(code)
            if found is not None:
                rank, row = found
                score = float(row["score"])
                features = {name: float(row[name]) for name in self.recommender.ranker.feature_names}
        bought = (np.array([], np.int64) if customer.history is None
                  else purchased_items(customer.history, len(self.bundle.item_ids)))
        explanation = self.explainer.explain(bought, np.array([code]), **customer.evidence)[0]
        anchor = self.bundle.shop_ids(np.array([explanation.anchor]))[0]
        return {"user_id": str(shop_customer_id), "item_id": item_id, "title": self.label(item_id),
                "known_user": customer.history is not None, "explanation": explanation.kind, "because_of": anchor,
                "because_of_title": self.label(anchor), "reason": sentence(explanation, self.label(anchor)),
                "strength": explanation.strength, "candidate": rank is not None, "rank": rank, "score": score,
                "features": features}

    def batch(self, k: int = 10) -> pd.DataFrame:
        """Top ``k`` of every known customer: user_id (pseudonym), rank, item_id, score, explanation columns: the
        first ``k`` of the answers ``warm`` keeps, which the API serves. A customer without a history the bundle's
        models read (no purchase of an item it knows, nor, where it learned from browsing, any view, cart or
        favourite) gets the fallback's popular items, as the API gives them. Anonymous sessions' purchases count for
        the items, but the sessions get no row."""
        k = self._check_k(k)
        with single_threaded():
            self.warm()
            tops = {key: self._answer(key) for key in self.data.customers}
        frames = [described(self.answers, self.popular_top[:k] if top is None else top[:k]).assign(user_id=key)
                  for key, top in tops.items()]
        if not frames:
            return pd.DataFrame(columns=["user_id", "rank", "item_id", "title", "score", "explanation", "because_of",
                                         "reason"])
        table = pd.concat(frames, ignore_index=True)
        return table[["user_id", *[c for c in table.columns if c != "user_id"]]]


def _request(customer: Customer) -> RankRequest:
    """A customer's own answer to rank: their history, events and cut-off."""
    return RankRequest(customer.history, customer.events, customer.behaviour, customer.as_of)
