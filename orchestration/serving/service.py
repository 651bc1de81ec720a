"""The champion bundle plus the shop's current data: what batch recommendations, the API and the CLI share.

``RecommendationService`` speaks the shop's own ids: customer ids are pseudonymised exactly as the marts do
(``orchestration.store.privacy``), item ids are the catalogue's. Data is read from the warehouse once, read-only,
and the connection closed, so a running service never holds DuckDB's single writer lock. Features are computed
as of one second after the newest event the warehouse holds, the same point-in-time rule as in training.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from orchestration.registry.bundle import Bundle, load_bundle, registered_bundle
from orchestration.registry.promotion import BUNDLE_MODEL, current_champion
from orchestration.store.embedding_cache import read_item_embeddings
from orchestration.store.marts import mart_fingerprint, read_interactions
from orchestration.store.privacy import pseudonymize
from recmodels.explain import (
    Explainer,
    behaviour_evidence,
    behaviour_evidence_by_user,
    co_view_similarity,
    sentence,
)
from recmodels.ranking import purchase_events
from recmodels.ranking.behaviour import BEHAVIOURS, behaviour_events, no_behaviour
from recmodels.recommender import item_feature_table, without_history_items
from recmodels.sequences import EVENT_TYPES, PAD, behaviour_codes, decode, encode, purchased_items, token_histories
from recmodels.similarity import unit_rows

SESSION_KEY = "__anonymous_session__"  # a user key no pseudonym can take ("u_" + hex)
FALLBACK_SOURCES = ("recent-popularity", "popularity")  # unknown customers get the first one the bundle has
MAX_K = 100
# What a session's events may be, in the order messages list them (purchases, the target, last).
SESSION_EVENT_TYPES = (*BEHAVIOURS, EVENT_TYPES[0])
SESSION_BASKET = "__session__"  # basket_id of a session's purchases


class NoChampionError(LookupError):
    """The registry has no champion yet: nothing to serve."""


def model_histories(bundle: Bundle, events: pd.DataFrame, behaviour: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per user key, the history the bundle's models read: purchases, with views, carts and favourites as tokens
    where the models learned from them (``TwoStageConfig.sequence_behaviour``), oldest first."""
    if not (bundle.recommender.config.sequence_behaviour and len(behaviour)):
        items = events["item"].to_numpy(np.int64)  # in the marts' order, as before views existed
        return {key: items[rows] for key, rows in events.groupby("user_key", sort=False).indices.items()}
    columns = ["user_key", "item", "occurred_at", "event_type"]
    merged = pd.concat([events.assign(event_type=EVENT_TYPES[0])[columns], behaviour[columns]], ignore_index=True)
    return token_histories(merged, len(bundle.item_ids))


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

    @classmethod
    def read(cls, warehouse, bundle: Bundle) -> ShopData:
        with warehouse.connect(read_only=True) as con:
            interactions = read_interactions(con)
            catalogue = con.execute("select item_id, title, description from marts.dim_items").df()
            customers = tuple(row[0] for row in con.execute(
                "select user_id from marts.dim_users where not is_anonymous order by user_id").fetchall())
            version = marts_version(con)
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
                   behaviour.groupby("user_key", sort=False).indices, version)


def marts_version(con) -> str:
    """The clean marts' content fingerprint: the same data gives the same version."""
    return mart_fingerprint(con)["version"]


@dataclass(frozen=True)
class SessionEvent:
    """One event of a session, in the bundle's ids: what the session did to an item, and when."""

    item: int  # internal id
    event_type: str  # one of EVENT_TYPES
    occurred_at: pd.Timestamp | None = None  # None: in the order given


def session_times(events: list[SessionEvent], as_of: pd.Timestamp) -> pd.DatetimeIndex:
    """When a session's events happened, on the service's clock: a session is ranked as if it had just happened,
    so its newest event is put one second before ``as_of`` (features read events before it) and the others keep
    their distances to it; events without times are one second apart in the order given."""
    given = [e.occurred_at for e in events]
    if all(t is None for t in given):
        times = pd.DatetimeIndex([pd.Timestamp(0) + pd.Timedelta(seconds=i) for i in range(len(events))])
    elif any(t is None for t in given):
        raise ValueError("timestamp: give every event of a session a timestamp, or none")
    else:
        times = pd.DatetimeIndex([pd.Timestamp(t).tz_convert(None) if pd.Timestamp(t).tzinfo else pd.Timestamp(t)
                                  for t in given])
    return times + ((as_of - pd.Timedelta(seconds=1)) - times.max()) if len(times) else times


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


class RecommendationService:
    """Recommendations, similar items and explanations from one bundle over the warehouse's data."""

    def __init__(self, bundle: Bundle, data: ShopData, pseudonymization_key: str, version: int | None = None):
        self.bundle = bundle
        self.data = data
        self.key = pseudonymization_key
        self.version = version
        models = bundle.models
        item_text = bundle.recommender.item_text
        self.text_unit = None if item_text is None else unit_rows(item_text)
        co_bought = models["item-knn"].similarity_ if "item-knn" in models else None
        co_viewed = co_view_similarity(data.behaviour, len(bundle.item_ids), training_end(bundle.spec, data.as_of))
        self.explainer = Explainer(co_bought=co_bought, co_viewed=co_viewed, text_unit=self.text_unit)
        # Every customer's views and open carts, once: the batch explains them all.
        self.evidence = behaviour_evidence_by_user(data.behaviour, data.events)
        self.fallback = next((name for name in FALLBACK_SOURCES if name in models), None)
        # Item-level features read every customer's events: once here, so a request reads only its customer's.
        self.item_features = item_feature_table(data.events, data.as_of, len(bundle.item_ids),
                                                data.behaviour if bundle.recommender.config.behaviour else None)
        self.lock = threading.Lock()  # torch and LightGBM are called from one request thread at a time

    # -------------------------------------------------------------------------------------------- loading

    def with_data(self, data: ShopData) -> RecommendationService:
        """The same bundle over newer data."""
        return type(self)(self.bundle, data, self.key, self.version)

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

    # ------------------------------------------------------------------------------------------- helpers

    def user_key(self, shop_customer_id: object) -> str:
        return pseudonymize(shop_customer_id, self.key)

    def title(self, item_id: str | None) -> str | None:
        """The catalogue's title, or None when the catalogue has none."""
        if item_id is None or item_id not in self.data.catalogue.index:
            return None
        title = self.data.catalogue.at[item_id, "title"]
        return None if pd.isna(title) else str(title)

    def label(self, item_id: str | None) -> str | None:
        """What a shopper is shown for an item: its title, or its id when the catalogue has no title."""
        return None if item_id is None else self.title(item_id) or str(item_id)

    @staticmethod
    def _rows_of(frame: pd.DataFrame, rows_by_key: dict[str, np.ndarray], keys: list[str]) -> pd.DataFrame:
        """The rows of ``frame`` that belong to ``keys``' customers, in ``frame``'s order."""
        rows = [rows_by_key[key] for key in keys if key in rows_by_key]
        return frame.iloc[np.sort(np.concatenate(rows))] if rows else frame.iloc[:0]

    def _check_k(self, k: int) -> int:
        if not 1 <= int(k) <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
        return int(k)

    def _ranked(self, histories: list[np.ndarray], keys: list[str], exclude_history: bool = False,
                events: pd.DataFrame | None = None, behaviour: pd.DataFrame | None = None) -> pd.DataFrame:
        """Every candidate of every history, best first within each row (the order every answer shares). The
        purchases and behaviour are these customers' in the warehouse, unless given (a session's)."""
        data = self.data
        # Only these customers' events: the item-level features, which read everybody's, come from the table.
        events = self._rows_of(data.events, data.event_rows, keys) if events is None else events
        behaviour = self._rows_of(data.behaviour, data.behaviour_rows, keys) if behaviour is None else behaviour
        with self.lock:
            ranked = self.bundle.recommender.rank(histories, np.asarray(keys, dtype=object), events, data.as_of,
                                                  item_features=self.item_features, behaviour=behaviour)
        if exclude_history:  # everything the history holds is seen, whatever the customer did with it
            ranked = without_history_items(ranked, [decode(h, len(self.bundle.item_ids))[0] for h in histories])
        return ranked.sort_values(["row", "score", "item"], ascending=[True, False, True],
                                  kind="stable").reset_index(drop=True)

    def _evidence(self, key: str) -> dict[str, np.ndarray]:
        """A customer's views and open carts in the warehouse, as ``Explainer.explain`` takes them."""
        if key not in self.evidence:
            return {}
        viewed, in_cart = self.evidence[key]
        return {"viewed": viewed, "in_cart": in_cart}

    def _rank(self, histories: list[np.ndarray], keys: list[str], k: int, include_seen: bool = True,
              evidence: list[dict[str, np.ndarray]] | None = None, **frames: pd.DataFrame) -> list[pd.DataFrame]:
        """Top ``k`` per history with score, rank and explanation; one frame per history. ``evidence``: each row's
        views, carts and purchases for the explanations (default: its customer's in the warehouse); ``frames``:
        ``_ranked``'s events and behaviour."""
        ranked = self._ranked(histories, keys, exclude_history=not include_seen, **frames)
        ranked = ranked.groupby("row", sort=True).head(k)
        by_row = {row: top for row, top in ranked.groupby("row", sort=False)}
        empty = ranked.iloc[:0]
        frames_out = []
        for row, history in enumerate(histories):
            top = by_row.get(row, empty)
            found = self._evidence(keys[row]) if evidence is None else evidence[row]
            frames_out.append(self._described(history, top["item"].to_numpy(), top["score"].to_numpy(), found))
        return frames_out

    def _described(self, history: np.ndarray, items: np.ndarray, scores: np.ndarray,
                   evidence: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
        items = np.asarray(items, dtype=np.int64)
        # Co-purchase evidence reads the purchases of a history that may hold views (tokens) too.
        explanations = self.explainer.explain(purchased_items(history, len(self.bundle.item_ids)), items,
                                              **(evidence or {}))
        item_ids = self.bundle.shop_ids(items)
        anchors = self.bundle.shop_ids(np.array([e.anchor for e in explanations], dtype=np.int64))
        return pd.DataFrame({
            "rank": np.arange(1, len(items) + 1),
            "item_id": item_ids,
            "title": [self.label(i) for i in item_ids],
            "score": np.asarray(scores, dtype=np.float64),
            "explanation": [e.kind for e in explanations],
            "because_of": anchors,
            "reason": [sentence(e, self.label(a)) for e, a in zip(explanations, anchors)],
        })

    def _popularity(self) -> tuple[np.ndarray, np.ndarray]:
        """(every item, best first; the fallback model's scores by internal id)."""
        scores = self.bundle.models[self.fallback].score([np.array([], np.int64)])[0]
        return np.argsort(-scores[1:], kind="stable") + 1, scores

    def _popular(self, k: int) -> pd.DataFrame:
        order, scores = self._popularity()
        return self._described(np.array([], np.int64), order[:k], scores[order[:k]])

    def popular(self, k: int = 10) -> dict[str, Any]:
        """The items popular now: what a customer without purchases is recommended."""
        return {"strategy": f"fallback:{self.fallback}", "items": self._popular(self._check_k(k))}

    def history(self, shop_customer_id: object, n: int = 10) -> dict[str, Any]:
        """A customer's ``n`` latest purchases of catalogue items the model knows, newest first."""
        n = self._check_k(n)
        key = self.user_key(shop_customer_id)
        rows = self.data.event_rows.get(key)
        known = rows is not None
        events = self.data.events.iloc[rows[::-1][:n]] if known else self.data.events.iloc[:0]
        item_ids = self.bundle.shop_ids(events["item"].to_numpy())
        items = pd.DataFrame({"item_id": item_ids, "title": [self.label(i) for i in item_ids],
                              "occurred_at": events["occurred_at"].to_numpy(),
                              "quantity": events["quantity"].to_numpy()})
        return {"user_id": str(shop_customer_id), "known_user": known,
                "purchases": int(len(rows)) if known else 0, "items": items}

    # ----------------------------------------------------------------------------------------- requests

    def recommend_user(self, shop_customer_id: object, k: int = 10) -> dict[str, Any]:
        """A known customer's top ``k`` from their latest history; popularity for an unknown one."""
        k = self._check_k(k)
        key = self.user_key(shop_customer_id)
        history = self.data.histories.get(key)
        if history is None:
            return {"user_id": str(shop_customer_id), "known_user": False, "strategy": f"fallback:{self.fallback}",
                    "items": self._popular(k)}
        return {"user_id": str(shop_customer_id), "known_user": True, "strategy": "two-stage",
                "history_length": int(len(history)), "items": self._rank([history], [key], k)[0]}

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

    def recommend_session(self, shop_item_ids: list[str], k: int = 10, include_seen: bool = False
                          ) -> dict[str, Any]:
        """An anonymous session's top ``k`` from the items it viewed or bought, in order; the session's own items
        only with ``include_seen``."""
        k = self._check_k(k)
        history, unknown, text_only = self.session_items(shop_item_ids)
        if not len(history):
            return {"strategy": f"fallback:{self.fallback}", "unknown_items": unknown, "text_only_items": text_only,
                    "items": self._popular(k)}
        # The items may only have been looked at: none of them is said to be bought.
        ranked = self._rank([history], [SESSION_KEY], k, include_seen=include_seen,
                            evidence=[{"bought": np.array([], np.int64)}])[0]
        return {"strategy": "two-stage", "unknown_items": unknown, "text_only_items": text_only, "items": ranked}

    def session_events(self, events: list[tuple[str, str, Any]]) -> tuple[list[SessionEvent], list[str], list[str]]:
        """(events in the bundle's ids, unknown ids, text-only ids) of a session's (item id, event type, time or
        None) triples; an event of an unknown item is left out, as ``session_items`` leaves the item out."""
        for _, event_type, _ in events:
            if event_type not in SESSION_EVENT_TYPES:
                raise ValueError(f"event_type: unknown value {event_type!r}; expected one of "
                                 f"{', '.join(SESSION_EVENT_TYPES)}")
        kept, unknown, text_only = [], [], []
        for item_id, event_type, occurred_at in events:
            mapped, missing, stand_in = self.session_items([item_id])
            unknown += [i for i in missing if i not in unknown]
            text_only += [i for i in stand_in if i not in text_only]
            if len(mapped):
                kept.append(SessionEvent(int(mapped[0]), event_type, occurred_at))
        return kept, unknown, text_only

    def recommend_events(self, events: list[tuple[str, str, Any]], k: int = 10, include_seen: bool = False,
                         shop_customer_id: object | None = None) -> dict[str, Any]:
        """A session's top ``k`` from its typed events: (item id, event type among EVENT_TYPES, time or None),
        in any order. Every event's item feeds the candidate models as a session's items do; the views, carts and
        favourites feed the ranker's behaviour features and the explanations, the purchases its purchase features
        (at the item's usual price) and "bought before". Without ``shop_customer_id`` the session is anonymous;
        with one, it adds to that customer's events in the warehouse. The session's own items only with
        ``include_seen``."""
        k = self._check_k(k)
        mapped, unknown, text_only = self.session_events(events)
        key = SESSION_KEY if shop_customer_id is None else self.user_key(shop_customer_id)
        known = self.data.histories.get(key, np.array([], np.int64))
        answer = {"unknown_items": unknown, "text_only_items": text_only,
                  **({} if shop_customer_id is None else {"user_id": str(shop_customer_id),
                                                          "known_user": key in self.data.event_rows})}
        if not mapped and not len(known):
            return {**answer, "strategy": f"fallback:{self.fallback}", "items": self._popular(k)}
        times = session_times(mapped, self.data.as_of)
        session = pd.DataFrame({"user_key": key, "item": np.array([e.item for e in mapped], np.int64),
                                "occurred_at": times.to_numpy(), "event_type": [e.event_type for e in mapped],
                                "quantity": 1.0}).sort_values("occurred_at", kind="stable")
        bought = session[session["event_type"] == "purchase"]
        price = (self.item_features["item_price"].to_numpy(np.float64)[bought["item"].to_numpy()]
                 if "item_price" in self.item_features else np.full(len(bought), np.nan))
        purchases = pd.concat([self._rows_of(self.data.events, self.data.event_rows, [key]),
                               bought.drop(columns="event_type").assign(unit_price=price, basket_id=SESSION_BASKET)],
                              ignore_index=True)
        behaviour = pd.concat([self._rows_of(self.data.behaviour, self.data.behaviour_rows, [key]),
                               session[session["event_type"] != "purchase"]], ignore_index=True)
        history = np.concatenate([known, self._session_history(session)])
        viewed, in_cart = behaviour_evidence(behaviour, purchases)
        evidence = {"viewed": viewed, "in_cart": in_cart, "bought": purchases["item"].to_numpy(np.int64)}
        ranked = self._rank([history], [key], k, include_seen=include_seen, evidence=[evidence],
                            events=purchases, behaviour=behaviour)[0]
        return {**answer, "strategy": "two-stage", "items": ranked}

    def _session_history(self, session: pd.DataFrame) -> np.ndarray:
        """A session's events as its models read them: tokens of every behaviour where they learned from browsing
        (``TwoStageConfig.sequence_behaviour``); else every event's item, as a session of items always was."""
        items = session["item"].to_numpy(np.int64)
        if not self.bundle.recommender.config.sequence_behaviour:
            return items
        return encode(items, behaviour_codes(session["event_type"].to_numpy()), len(self.bundle.item_ids))

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
        history = self.data.histories.get(key)
        item_id = str(shop_item_id)
        code = int(self.bundle.internal_ids([item_id])[0])
        if code == PAD:
            raise KeyError(f"item {item_id!r} is not in the model's catalogue")
        rank = score = None
        features: dict[str, float] = {}
        if history is None:  # recommend_user's fallback: every item has its place in the popularity order
            order, scores = self._popularity()
            rank, score = int(np.flatnonzero(order == code)[0]) + 1, float(scores[code])
        else:
            ranked = self._ranked([history], [key])
            hit = np.flatnonzero(ranked["item"].to_numpy() == code)
            if len(hit):
                row = ranked.iloc[int(hit[0])]
                rank, score = int(hit[0]) + 1, float(row["score"])
                features = {name: float(row[name]) for name in self.bundle.recommender.ranker.feature_names}
        bought = np.array([], np.int64) if history is None else purchased_items(history, len(self.bundle.item_ids))
        explanation = self.explainer.explain(bought, np.array([code]), **self._evidence(key))[0]
        anchor = self.bundle.shop_ids(np.array([explanation.anchor]))[0]
        return {"user_id": str(shop_customer_id), "item_id": item_id, "title": self.label(item_id),
                "known_user": history is not None, "explanation": explanation.kind, "because_of": anchor,
                "because_of_title": self.label(anchor), "reason": sentence(explanation, self.label(anchor)),
                "strength": explanation.strength, "candidate": rank is not None, "rank": rank, "score": score,
                "features": features}

    def batch(self, k: int = 10, batch_size: int = 1024) -> pd.DataFrame:
        """Top ``k`` of every known customer: user_id (pseudonym), rank, item_id, score, explanation columns. A
        customer without a history the bundle's models read (no purchase of an item it knows, nor, where it learned
        from browsing, any view, cart or favourite) gets the fallback's popular items, as the API gives them.
        Anonymous sessions' purchases count for the items, but the sessions get no row."""
        k = self._check_k(k)
        keys = sorted(set(self.data.histories) & set(self.data.customers))
        frames = []
        for start in range(0, len(keys), batch_size):
            chunk = keys[start:start + batch_size]
            ranked = self._rank([self.data.histories[key] for key in chunk], chunk, k)
            frames += [frame.assign(user_id=key) for key, frame in zip(chunk, ranked)]
        without_history = sorted(set(self.data.customers) - set(keys))
        if without_history:
            popular = self._popular(k)
            frames += [popular.assign(user_id=key) for key in without_history]
        if not frames:
            return pd.DataFrame(columns=["user_id", "rank", "item_id", "title", "score", "explanation", "because_of",
                                         "reason"])
        table = pd.concat(frames, ignore_index=True)
        return table[["user_id", *[c for c in table.columns if c != "user_id"]]]
