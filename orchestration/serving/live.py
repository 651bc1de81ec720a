"""Events recorded while the service runs, so that a customer's next answer reflects what they just did.

``RecommendationService.record_events`` takes the shop's own ids; here they become rows of the two frames
``ShopData`` reads from the warehouse (``purchase_events`` and ``behaviour_events`` layouts), keyed as dbt keys
them: a customer by ``pseudonymize``, an anonymous visitor by ``pseudonymize_session`` of the session id. Items the
bundle does not know are left out, as ``ShopData.read`` leaves them out.

Recording is cheap and reading pays: a batch is appended to the log (``RecordedLog``) and, row by row, to its
keys' waiting rows (``Waiting``); a customer is rebuilt from their stored rows plus the waiting ones
(``with_pending``) only when something reads them. Rebuilding one customer is a few array operations (``customer_history``,
``recmodels.explain.behaviour_evidence``), the same results ``ShopData.read`` and ``behaviour_evidence_by_user`` give
for every user.
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from orchestration.registry.bundle import Bundle
from orchestration.serving.shop import EVENT_ID, ShopData
from orchestration.store.privacy import pseudonymize, pseudonymize_session
from recmodels.explain import behaviour_evidence
from recmodels.ranking.behaviour import BEHAVIOURS, no_behaviour
from recmodels.recommender import no_purchases
from recmodels.sequences import EVENT_TYPES, encode

RECORDED_COLUMNS = ("event_id", "user_id", "session_id", "item_id", "event_type", "occurred_at", "quantity", "price")
SEQUENCE = "recorded"  # the order events were recorded in: the event log's order, which ingestion keeps
PURCHASE_COLUMNS = tuple(no_purchases().columns)  # user_key, item, occurred_at, quantity, unit_price, basket_id
BEHAVIOUR_COLUMNS = tuple(no_behaviour().columns)  # user_key, item, occurred_at, event_type, quantity
CODES = {name: code for code, name in enumerate(EVENT_TYPES)}
DTYPES = {**no_purchases().dtypes.to_dict(), **no_behaviour().dtypes.to_dict()}  # of every column of either
LOG_FANIN = 16  # batches of one size the log joins into one: a long run holds a few frames, not one a batch


@dataclass(frozen=True)
class Customer:
    """What one user key has done, the warehouse's events and those recorded since: what its answers read."""

    events: pd.DataFrame  # purchase_events rows, oldest first
    behaviour: pd.DataFrame  # behaviour_events rows
    history: np.ndarray | None  # the models' history; None: nothing the models read
    evidence: dict[str, np.ndarray]  # views and open carts, as Explainer.explain takes them
    as_of: pd.Timestamp  # its features read the events before this time


def _missing(value: object) -> bool:
    """No id: null, NaN or blank text, as staging reads ids."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT \
        or not str(value).strip()


def _tracked(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{EVENT_ID: np.array([], object), SEQUENCE: np.array([], np.int64)})


@dataclass(frozen=True)
class Recorded:
    """Recorded events in one bundle's ids: purchases and behaviour as ``ShopData`` holds them, plus their
    ``event_id`` and recording order (``SEQUENCE``)."""

    purchases: pd.DataFrame = field(default_factory=lambda: _tracked(no_purchases()))
    behaviour: pd.DataFrame = field(default_factory=lambda: _tracked(no_behaviour()))

    def __len__(self) -> int:
        return len(self.purchases) + len(self.behaviour)

    @property
    def keys(self) -> set[str]:
        return set(self.purchases["user_key"]) | set(self.behaviour["user_key"])

    @property
    def newest(self) -> pd.Timestamp | None:
        times = np.concatenate([self.purchases["occurred_at"].to_numpy("datetime64[ns]"),
                                self.behaviour["occurred_at"].to_numpy("datetime64[ns]")])
        return None if not len(times) else pd.Timestamp(times.max())

    def since(self, sequence: int) -> Recorded:
        """The events recorded at ``sequence`` or later."""
        if self.first_sequence >= sequence:
            return self
        return Recorded(self.purchases[self.purchases[SEQUENCE].to_numpy() >= sequence],
                        self.behaviour[self.behaviour[SEQUENCE].to_numpy() >= sequence])

    @property
    def event_ids(self) -> set[str]:
        return {str(i) for frame in (self.purchases, self.behaviour) for i in frame[EVENT_ID].to_numpy()
                if not _missing(i)}

    @property
    def first_sequence(self) -> int:
        return int(min(self.purchases[SEQUENCE].to_numpy().min(initial=np.iinfo(np.int64).max),
                       self.behaviour[SEQUENCE].to_numpy().min(initial=np.iinfo(np.int64).max)))

    @property
    def last_sequence(self) -> int:
        return int(max(self.purchases[SEQUENCE].to_numpy().max(initial=-1),
                       self.behaviour[SEQUENCE].to_numpy().max(initial=-1)))

    def without(self, *held: Container[str] | None) -> Recorded:
        """These events but those whose id is in any of ``held`` and, of several with one id, all but the first
        recorded (whether a purchase or not): a retried post counts once."""
        n = len(self.purchases)
        ids = np.concatenate([self.purchases[EVENT_ID].to_numpy(object), self.behaviour[EVENT_ID].to_numpy(object)])
        order = np.argsort(np.concatenate([self.purchases[SEQUENCE].to_numpy(), self.behaviour[SEQUENCE].to_numpy()]),
                           kind="stable")
        held = [ids_ for ids_ in held if ids_]
        keep, seen = np.ones(len(ids), bool), set()
        for at in order:
            if _missing(ids[at]):
                continue
            text = str(ids[at])
            if text in seen or any(text in ids_ for ids_ in held):
                keep[at] = False
            seen.add(text)
        if keep.all():
            return self
        return Recorded(self.purchases[keep[:n]].reset_index(drop=True), self.behaviour[keep[n:]].reset_index(drop=True))

    @classmethod
    def joined(cls, batches: list[Recorded]) -> Recorded:
        """Several batches as one, in order."""
        batches = [batch for batch in batches if len(batch)]
        if not batches:
            return cls()
        if len(batches) == 1:
            return batches[0]
        return cls(pd.concat([b.purchases for b in batches], ignore_index=True),
                   pd.concat([b.behaviour for b in batches], ignore_index=True))


class RecordedLog:
    """Every recorded batch, in recording order. Batches are joined as they pile up, ``LOG_FANIN`` of one size
    into one (a counter's carry), so a server taking ten batches a second for hours holds a few dozen frames, and
    appending costs a join of ``LOG_FANIN`` small frames now and then."""

    def __init__(self) -> None:
        self._parts: list[tuple[int, Recorded]] = []  # (level: joined from LOG_FANIN ** level batches, events)

    def append(self, recorded: Recorded) -> None:
        self._parts.append((0, recorded))
        while (len(self._parts) >= LOG_FANIN
               and len({level for level, _ in self._parts[-LOG_FANIN:]}) == 1):
            level = self._parts[-1][0]
            self._parts[-LOG_FANIN:] = [(level + 1, Recorded.joined([part for _, part in self._parts[-LOG_FANIN:]]))]

    def since(self, sequence: int) -> Recorded:
        """The events recorded at ``sequence`` or later, as one batch."""
        return Recorded.joined([part.since(sequence) for _, part in self._parts if part.last_sequence >= sequence])

    def joined(self) -> Recorded:
        return Recorded.joined([part for _, part in self._parts])


@dataclass
class Pending:
    """One user key's recorded events not yet in its ``Customer``, in recording order: purchases as (item,
    occurred_at, quantity, unit_price, basket_id) and behaviour as (item, occurred_at, event_type, quantity),
    plain Python values (times in ns since the epoch), which take less memory than numpy's scalars."""

    purchases: list[tuple] = field(default_factory=list)
    behaviour: list[tuple] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.purchases) + len(self.behaviour)

    def copy(self) -> Pending:
        return Pending(list(self.purchases), list(self.behaviour))

    @property
    def newest(self) -> pd.Timestamp:
        return pd.Timestamp(max(row[1] for rows in (self.purchases, self.behaviour) for row in rows))


def _columns(key: str, columns: tuple[str, ...], rows: list[tuple]) -> dict[str, np.ndarray]:
    """``rows`` of ``key`` (tuples of ``columns`` but the first, user_key) as arrays."""
    return {"user_key": np.full(len(rows), key, dtype=object),
            **{name: np.array(values, dtype=DTYPES[name]) for name, values in zip(columns[1:], zip(*rows))}}


class Waiting(dict):
    """User key -> its ``Pending`` events: those recorded since its customer was last built."""

    def add(self, recorded: Recorded) -> set[str]:
        """Add ``recorded``'s rows to their keys' (one pass over the batch, no filtering per key); the keys."""
        touched = set()
        for frame, columns, part in ((recorded.purchases, PURCHASE_COLUMNS, "purchases"),
                                     (recorded.behaviour, BEHAVIOUR_COLUMNS, "behaviour")):
            if not len(frame):
                continue
            values = [frame[name].to_numpy("datetime64[ns]").view(np.int64) if name == "occurred_at"
                      else frame[name].to_numpy() for name in columns]
            for key, *row in zip(*(column.tolist() for column in values)):
                pending = self.get(key)
                if pending is None:
                    pending = self[key] = Pending()
                getattr(pending, part).append(tuple(row))
                touched.add(key)
        return touched


def recorded_rows(frame: pd.DataFrame, key: str, bundle: Bundle, first_sequence: int) -> Recorded:
    """``frame`` (``RECORDED_COLUMNS``: shop ids, event types of ``EVENT_TYPES``, tz-naive UTC times) as
    ``Recorded`` rows numbered from ``first_sequence``. An event with neither a customer nor a session id is left
    out, as dbt quarantines it; so is one of an item the bundle does not know. Missing quantities count 1, as in
    the marts."""
    missing = [name for name in RECORDED_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"events lack the columns {missing}; expected {list(RECORDED_COLUMNS)}")
    event_types = frame["event_type"].to_numpy(object)
    unknown = sorted({str(t) for t in set(event_types) if t not in CODES})
    if unknown:
        raise ValueError(f"event_type {', '.join(map(repr, unknown))} is not one of {', '.join(EVENT_TYPES)}")
    users, sessions = frame["user_id"].to_numpy(object), frame["session_id"].to_numpy(object)
    customer = np.array([not _missing(user) for user in users], bool)
    session = np.array([not _missing(visit) for visit in sessions], bool)
    items = bundle.internal_ids(frame["item_id"].to_numpy())
    kept = (customer | session) & (items != 0)
    times = pd.to_datetime(frame["occurred_at"])
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    rows = {
        "user_key": np.array([pseudonymize(user, key) if has_user else pseudonymize_session(visit, key)
                              for user, visit, has_user in zip(users[kept], sessions[kept], customer[kept])],
                             dtype=object),
        "item": items[kept], "occurred_at": times.to_numpy("datetime64[ns]")[kept],
        "quantity": pd.to_numeric(frame["quantity"]).fillna(1.0).to_numpy(np.float64)[kept],
        "unit_price": pd.to_numeric(frame["price"]).to_numpy(np.float64)[kept],
        # A posted purchase's basket is its session, as dbt has it for generic interactions.
        "basket_id": np.array([str(visit).strip() if has_session else None
                               for visit, has_session in zip(sessions[kept], session[kept])], dtype=object),
        "event_type": event_types[kept], EVENT_ID: frame["event_id"].to_numpy(object)[kept],
        SEQUENCE: np.arange(first_sequence, first_sequence + len(frame), dtype=np.int64)[kept],
    }
    bought = rows["event_type"] == EVENT_TYPES[0]
    behaviour = ~bought & np.isin(rows["event_type"], BEHAVIOURS)

    def part(mask: np.ndarray, columns: tuple[str, ...]) -> pd.DataFrame:
        return pd.DataFrame({name: rows[name][mask] for name in (*columns, EVENT_ID, SEQUENCE)})

    return Recorded(part(bought, PURCHASE_COLUMNS), part(behaviour, BEHAVIOUR_COLUMNS))


def unprocessed(recorded: Recorded, data: ShopData) -> Recorded:
    """The recorded events ``data`` does not hold yet, so that nothing counts twice once the pipeline has loaded
    them. With ``event_id`` in the marts: an event is processed when its id is there, or when an event recorded
    after it is (ingestion keeps the event log's order, so one the marts merged away, like a repeated view dbt
    collapses, or rejected was processed too). Without: events after the data's newest are kept."""

    def kept(frame: pd.DataFrame, last_processed: int) -> pd.DataFrame:
        ids = frame[EVENT_ID]
        if data.event_ids is None:
            return frame[frame["occurred_at"].to_numpy() > np.datetime64(data.newest.to_datetime64(), "ns")]
        held = ids.notna().to_numpy() & ids.astype(str).isin(data.event_ids).to_numpy()
        return frame[~held & (frame[SEQUENCE].to_numpy() > last_processed)]

    last = -1
    if data.event_ids is not None:
        for frame in (recorded.purchases, recorded.behaviour):
            held = frame[EVENT_ID].notna() & frame[EVENT_ID].astype(str).isin(data.event_ids)
            last = max(last, int(frame.loc[held, SEQUENCE].max()) if held.any() else -1)
    return Recorded(kept(recorded.purchases, last), kept(recorded.behaviour, last))


def with_pending(before: Customer, key: str, pending: Pending, bundle: Bundle, shop_has_behaviour: bool
                 ) -> Customer:
    """``before`` with ``key``'s pending events added: purchases, behaviour, history and evidence as the
    warehouse's are (``ShopData.read``), the cut-off moved to one second after the newest event, if later.
    ``shop_has_behaviour``: whether the shop's histories are tokens already (models reading behaviour)."""
    if not len(pending):
        return before
    events, behaviour = before.events, before.behaviour
    if pending.purchases:
        events = _merged(events, _columns(key, PURCHASE_COLUMNS, pending.purchases))
    if pending.behaviour:
        behaviour = _merged(behaviour, _columns(key, BEHAVIOUR_COLUMNS, pending.behaviour))
    as_tokens = bundle.recommender.config.sequence_behaviour and (shop_has_behaviour or len(behaviour) > 0)
    history = customer_history(events, behaviour, len(bundle.item_ids), as_tokens)
    viewed, in_cart = behaviour_evidence(behaviour, events)
    return Customer(events, behaviour, history, {"viewed": viewed, "in_cart": in_cart},
                    max(before.as_of, pending.newest + pd.Timedelta(seconds=1)))


def customer_history(events: pd.DataFrame, behaviour: pd.DataFrame, n_items: int, as_tokens: bool
                     ) -> np.ndarray | None:
    """One customer's history as ``shop.model_histories`` gives it (None where it gives none): their purchases'
    items in ``events``' order or, ``as_tokens``, every event's token oldest first, ties by token."""
    if not as_tokens:
        return events["item"].to_numpy(np.int64) if len(events) else None
    if not len(events) and not len(behaviour):
        return None
    codes = np.array([CODES[name] for name in behaviour["event_type"].to_numpy(object)], np.int64)
    tokens = np.concatenate([events["item"].to_numpy(np.int64),
                             encode(behaviour["item"].to_numpy(np.int64), codes, n_items)])
    times = np.concatenate([events["occurred_at"].to_numpy("datetime64[ns]"),
                            behaviour["occurred_at"].to_numpy("datetime64[ns]")])
    return tokens[np.lexsort((tokens, times))]


def merged(frame: pd.DataFrame, more: pd.DataFrame) -> pd.DataFrame:
    """``frame`` and ``more`` (its columns only) in time order; equal times keep ``frame``'s rows first."""
    if not len(more):
        return frame
    return _merged(frame, {name: more[name].to_numpy() for name in frame.columns})


def _merged(frame: pd.DataFrame, more: dict[str, np.ndarray]) -> pd.DataFrame:
    """``merged`` of ``frame`` and columns (of every one of ``frame``'s): one sort and one frame built, as a
    customer is rebuilt on a read."""
    times = np.concatenate([frame["occurred_at"].to_numpy("datetime64[ns]"),
                            more["occurred_at"].astype("datetime64[ns]")])
    order = np.argsort(times, kind="stable")
    return pd.DataFrame({name: np.concatenate([frame[name].to_numpy(), more[name]])[order]
                         for name in frame.columns})
