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

import functools
import math
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from orchestration.ingest.event_rules import Event
from orchestration.registry.bundle import Bundle
from orchestration.serving.shop import EVENT_ID, ShopData
from orchestration.store.privacy import pseudonymize, pseudonymize_session
from recmodels.event_table import EventTable
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
EPOCH, MICROSECOND = datetime(1970, 1, 1), timedelta(microseconds=1)  # naive UTC, as Event.occurred_at
LOG_FANIN = 16  # batches of one size the log joins into one: a long run holds a few frames, not one a batch


@dataclass(frozen=True)
class Customer:
    """What one user key has done, the warehouse's events and those recorded since: what its answers read."""

    events: EventTable  # purchase_events rows, oldest first
    behaviour: EventTable  # behaviour_events rows
    history: np.ndarray | None  # the models' history; None: nothing the models read
    evidence: dict[str, np.ndarray]  # views and open carts, as Explainer.explain takes them
    as_of: pd.Timestamp  # its features read the events before this time


def _missing(value: object) -> bool:
    """No id: null, NaN or blank text, as staging reads ids."""
    if isinstance(value, str):  # nearly every id: one test
        return not value.strip()
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT \
        or not str(value).strip()


def _tracked(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{EVENT_ID: np.array([], object), SEQUENCE: np.array([], np.int64)})


Columns = dict[str, np.ndarray]  # column name -> its values, every array of one length


def _empty(template: pd.DataFrame) -> Columns:
    return {**{name: template[name].to_numpy() for name in template.columns},
            EVENT_ID: np.array([], object), SEQUENCE: np.array([], np.int64)}


def _select(columns: Columns, mask: np.ndarray) -> Columns:
    return {name: values[mask] for name, values in columns.items()}


def _frame(columns: Columns, empty) -> pd.DataFrame:
    return pd.DataFrame(columns) if len(columns[SEQUENCE]) else _tracked(empty())


@dataclass(frozen=True, eq=False)
class Recorded:
    """Recorded events in one bundle's ids: the columns of purchases and behaviour as ``ShopData`` holds them,
    plus their ``event_id`` and recording order (``SEQUENCE``). Plain arrays, as recording takes a batch on the
    request's path; the frames (``purchases``, ``behaviour``) are built when something reads them."""

    purchase_columns: Columns = field(default_factory=lambda: _empty(no_purchases()))
    behaviour_columns: Columns = field(default_factory=lambda: _empty(no_behaviour()))

    def __len__(self) -> int:
        return len(self.purchase_columns[SEQUENCE]) + len(self.behaviour_columns[SEQUENCE])

    @functools.cached_property
    def purchases(self) -> pd.DataFrame:
        return _frame(self.purchase_columns, no_purchases)

    @functools.cached_property
    def behaviour(self) -> pd.DataFrame:
        return _frame(self.behaviour_columns, no_behaviour)

    @property
    def _parts(self) -> tuple[Columns, Columns]:
        return self.purchase_columns, self.behaviour_columns

    @property
    def keys(self) -> set[str]:
        return {key for part in self._parts for key in part["user_key"].tolist()}

    @property
    def newest(self) -> pd.Timestamp | None:
        times = np.concatenate([part["occurred_at"].astype("datetime64[ns]") for part in self._parts])
        return None if not len(times) else pd.Timestamp(times.max())

    def since(self, sequence: int) -> Recorded:
        """The events recorded at ``sequence`` or later."""
        if self.first_sequence >= sequence:
            return self
        return Recorded(*(_select(part, part[SEQUENCE] >= sequence) for part in self._parts))

    @property
    def event_ids(self) -> set[str]:
        return {str(i) for part in self._parts for i in part[EVENT_ID].tolist() if not _missing(i)}

    @property
    def first_sequence(self) -> int:
        return int(min(part[SEQUENCE].min(initial=np.iinfo(np.int64).max) for part in self._parts))

    @property
    def last_sequence(self) -> int:
        return int(max(part[SEQUENCE].max(initial=-1) for part in self._parts))

    def without(self, *held: Container[str] | None) -> Recorded:
        """These events but those whose id is in any of ``held`` and, of several with one id, all but the first
        recorded (whether a purchase or not): a retried post counts once."""
        n = len(self.purchase_columns[SEQUENCE])
        ids = np.concatenate([part[EVENT_ID] for part in self._parts])
        order = np.argsort(np.concatenate([part[SEQUENCE] for part in self._parts]), kind="stable")
        held = [ids_ for ids_ in held if ids_]
        keep, seen = np.ones(len(ids), bool), set()
        for at, value in zip(order.tolist(), ids[order].tolist()):
            if _missing(value):
                continue
            text = str(value)
            if text in seen or any(text in ids_ for ids_ in held):
                keep[at] = False
            seen.add(text)
        if keep.all():
            return self
        return Recorded(_select(self.purchase_columns, keep[:n]), _select(self.behaviour_columns, keep[n:]))

    @classmethod
    def joined(cls, batches: list[Recorded]) -> Recorded:
        """Several batches as one, in order."""
        batches = [batch for batch in batches if len(batch)]
        if not batches:
            return cls()
        if len(batches) == 1:
            return batches[0]
        return cls(*({name: np.concatenate([b._parts[at][name] for b in batches]) for name in batches[0]._parts[at]}
                     for at in range(2)))


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
        for columns, names, part in ((recorded.purchase_columns, PURCHASE_COLUMNS, "purchases"),
                                     (recorded.behaviour_columns, BEHAVIOUR_COLUMNS, "behaviour")):
            if not len(columns[SEQUENCE]):
                continue
            values = [columns[name].astype("datetime64[ns]").view(np.int64) if name == "occurred_at"
                      else columns[name] for name in names]
            for key, *row in zip(*(column.tolist() for column in values)):
                pending = self.get(key)
                if pending is None:
                    pending = self[key] = Pending()
                getattr(pending, part).append(tuple(row))
                touched.add(key)
        return touched


def _frame_columns(frame: pd.DataFrame) -> Columns:
    """``RECORDED_COLUMNS`` of a frame as arrays: text as objects, times naive UTC, missing quantities 1."""
    missing = [name for name in RECORDED_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"events lack the columns {missing}; expected {list(RECORDED_COLUMNS)}")
    times = pd.to_datetime(frame["occurred_at"])
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return {**{name: frame[name].to_numpy(object) for name in ("event_id", "user_id", "session_id", "event_type")},
            "item_id": frame["item_id"].to_numpy(), "occurred_at": times.to_numpy("datetime64[ns]"),
            "quantity": pd.to_numeric(frame["quantity"]).fillna(1.0).to_numpy(np.float64),
            "price": pd.to_numeric(frame["price"]).to_numpy(np.float64)}


def _event_columns(events: Sequence[Event]) -> Columns:
    """``RECORDED_COLUMNS`` of checked events as arrays, as ``_frame_columns`` gives them: one pass a column,
    no frame (this runs on the request's path)."""
    return {**{name: np.array([getattr(e, name) for e in events], dtype=object)
               for name in ("event_id", "user_id", "session_id", "item_id", "event_type")},
            # Microseconds by arithmetic: numpy's conversion of datetime objects costs twice as much.
            "occurred_at": (np.array([(e.occurred_at - EPOCH) // MICROSECOND for e in events], np.int64)
                            * 1000).view("datetime64[ns]"),
            "quantity": np.array([1.0 if e.quantity is None else e.quantity for e in events], np.float64),
            "price": np.array([math.nan if e.price is None else e.price for e in events], np.float64)}


def recorded_rows(events: pd.DataFrame | Sequence[Event], key: str, bundle: Bundle, first_sequence: int
                  ) -> Recorded:
    """``events`` (a frame of ``RECORDED_COLUMNS``: shop ids, event types of ``EVENT_TYPES``, UTC times; or the
    API's checked events) as ``Recorded`` rows numbered from ``first_sequence``. An event with neither a
    customer nor a session id is left out, as dbt quarantines it; so is one of an item the bundle does not know.
    Missing quantities count 1, as in the marts."""
    columns = _frame_columns(events) if isinstance(events, pd.DataFrame) else _event_columns(events)
    event_types = columns["event_type"]
    unknown = sorted({str(t) for t in set(event_types.tolist()) if t not in CODES})
    if unknown:
        raise ValueError(f"event_type {', '.join(map(repr, unknown))} is not one of {', '.join(EVENT_TYPES)}")
    users, sessions = columns["user_id"], columns["session_id"]
    customer = np.array([not _missing(user) for user in users.tolist()], bool)
    session = np.array([not _missing(visit) for visit in sessions.tolist()], bool)
    items = bundle.internal_ids(columns["item_id"])
    kept = (customer | session) & (items != 0)
    users, sessions, customer, session = users[kept], sessions[kept], customer[kept], session[kept]
    rows = {
        "user_key": np.array([_pseudonym(user, key) if has_user else pseudonymize_session(visit, key)
                              for user, visit, has_user in zip(users.tolist(), sessions.tolist(), customer.tolist())],
                             dtype=object),
        "item": items[kept], "occurred_at": columns["occurred_at"][kept],
        "quantity": columns["quantity"][kept], "unit_price": columns["price"][kept],
        # A posted purchase's basket is its session, as dbt has it for generic interactions.
        "basket_id": np.array([str(visit).strip() if has_session else None
                               for visit, has_session in zip(sessions.tolist(), session.tolist())], dtype=object),
        "event_type": event_types[kept], EVENT_ID: columns["event_id"][kept],
        SEQUENCE: np.arange(first_sequence, first_sequence + len(events), dtype=np.int64)[kept],
    }
    types = rows["event_type"].tolist()
    bought = np.array([kind == EVENT_TYPES[0] for kind in types], bool)
    behaviour = np.array([kind in BEHAVIOURS for kind in types], bool) & ~bought
    return Recorded(*({name: rows[name][mask] for name in (*names, EVENT_ID, SEQUENCE)}
                      for mask, names in ((bought, PURCHASE_COLUMNS), (behaviour, BEHAVIOUR_COLUMNS))))


# A customer's events often come together, and recording runs on the request's path: their key hashed once.
# Typed, as 1 and True are one key to a plain cache but not one id.
_pseudonym = functools.lru_cache(maxsize=1 << 14, typed=True)(pseudonymize)


def _present(value: object) -> bool:
    """Not null or NaN (pandas' notna of one value)."""
    return not (value is None or value is pd.NA or value is pd.NaT
                or (isinstance(value, float) and math.isnan(value)))


def unprocessed(recorded: Recorded, data: ShopData) -> Recorded:
    """The recorded events ``data`` does not hold yet, so that nothing counts twice once the pipeline has loaded
    them. With ``event_id`` in the marts: an event is processed when its id is there, or when an event recorded
    after it is (ingestion keeps the event log's order, so one the marts merged away, like a repeated view dbt
    collapses, or rejected was processed too). Without: events after the data's newest are kept."""
    parts = recorded.purchase_columns, recorded.behaviour_columns
    if data.event_ids is None:
        newest = np.datetime64(data.newest.to_datetime64(), "ns")
        return Recorded(*(_select(part, part["occurred_at"] > newest) for part in parts))
    held = [np.array([_present(i) and str(i) in data.event_ids for i in part[EVENT_ID].tolist()], bool)
            for part in parts]
    last = max((int(part[SEQUENCE][done].max()) for part, done in zip(parts, held) if done.any()), default=-1)
    return Recorded(*(_select(part, ~done & (part[SEQUENCE] > last)) for part, done in zip(parts, held)))


def with_pending(before: Customer, key: str, pending: Pending, bundle: Bundle, shop_has_behaviour: bool
                 ) -> Customer:
    """``before`` with ``key``'s pending events added: purchases, behaviour, history and evidence as the
    warehouse's are (``ShopData.read``), the cut-off moved to one second after the newest event, if later.
    ``shop_has_behaviour``: whether the shop's histories are tokens already (models reading behaviour)."""
    if not len(pending):
        return before
    events, behaviour = before.events, before.behaviour
    if pending.purchases:
        events = merged(events, _columns(key, PURCHASE_COLUMNS, pending.purchases))
    if pending.behaviour:
        behaviour = merged(behaviour, _columns(key, BEHAVIOUR_COLUMNS, pending.behaviour))
    as_tokens = bundle.recommender.config.sequence_behaviour and (shop_has_behaviour or len(behaviour) > 0)
    history = customer_history(events, behaviour, len(bundle.item_ids), as_tokens)
    viewed, in_cart = behaviour_evidence(behaviour, events)
    return Customer(events, behaviour, history, {"viewed": viewed, "in_cart": in_cart},
                    max(before.as_of, pending.newest + pd.Timedelta(seconds=1)))


def customer_history(events: EventTable, behaviour: EventTable, n_items: int, as_tokens: bool
                     ) -> np.ndarray | None:
    """One customer's history as ``shop.model_histories`` gives it (None where it gives none): their purchases'
    items in ``events``' order or, ``as_tokens``, every event's token oldest first, ties by token."""
    if not as_tokens:
        return events["item"].astype(np.int64) if len(events) else None
    if not len(events) and not len(behaviour):
        return None
    codes = np.array([CODES[name] for name in behaviour["event_type"].tolist()], np.int64)
    tokens = np.concatenate([events["item"].astype(np.int64), encode(behaviour["item"].astype(np.int64), codes,
                                                                     n_items)])
    times = np.concatenate([events["occurred_at"].astype("datetime64[ns]"),
                            behaviour["occurred_at"].astype("datetime64[ns]")])
    return tokens[np.lexsort((tokens, times))]


def merged(table: EventTable, more: EventTable | dict[str, np.ndarray]) -> EventTable:
    """``table`` and ``more`` (with every one of its columns) in time order; equal times keep ``table``'s rows
    first: one sort, as a customer is rebuilt on a read."""
    if not len(more["occurred_at"]):
        return table
    times = np.concatenate([table["occurred_at"].astype("datetime64[ns]"),
                            more["occurred_at"].astype("datetime64[ns]")])
    order = np.argsort(times, kind="stable")
    return EventTable({name: np.concatenate([table[name], more[name]])[order] for name in table.columns})


class StoredEvents:
    """A warehouse frame of every user's events (``purchase_events`` or ``behaviour_events``) as arrays, to gather
    one user's rows in microseconds. Text is held as codes into its distinct values (as objects, a text column
    would hold a Python string a row) and the user key not at all: one user's rows share it."""

    def __init__(self, frame: pd.DataFrame):
        self.columns = tuple(frame.columns)
        self._length = len(frame)
        self._arrays: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = {}
        for name in self.columns:
            if name == "user_key":
                continue
            values = frame[name].to_numpy()
            if values.dtype.kind in "biufcmM":
                self._arrays[name] = values
            else:  # missing text is code -1: the NaN after the distinct values, as to_numpy gives it
                codes, distinct = pd.factorize(values, use_na_sentinel=True)
                self._arrays[name] = (codes, np.append(np.asarray(distinct, dtype=object), np.nan))

    def __len__(self) -> int:
        return self._length

    def rows(self, key: str, rows: np.ndarray) -> EventTable:
        """The events at ``rows`` (positions) of user ``key``, as ``EventTable.of`` gives them of the frame."""
        columns = {}
        for name in self.columns:
            held = self._arrays.get(name)
            if held is None:
                columns[name] = np.full(len(rows), key, dtype=object)
            elif isinstance(held, tuple):
                columns[name] = held[1][held[0][rows]]
            else:
                columns[name] = held[rows]
        return EventTable(columns)
