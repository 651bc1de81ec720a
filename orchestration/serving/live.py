"""Events recorded while the service runs, so that a customer's next answer reflects what they just did.

``RecommendationService.record_events`` takes the shop's own ids; here they become rows of the two frames
``ShopData`` reads from the warehouse (``purchase_events`` and ``behaviour_events`` layouts), keyed as dbt keys
them: a customer by ``pseudonymize``, an anonymous visitor by ``pseudonymize_session`` of the session id. Items the
bundle does not know are left out, as ``ShopData.read`` leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from orchestration.registry.bundle import Bundle
from orchestration.serving.shop import EVENT_ID, ShopData, model_histories
from orchestration.store.privacy import pseudonymize, pseudonymize_session
from recmodels.explain import behaviour_evidence
from recmodels.ranking.behaviour import BEHAVIOURS, no_behaviour
from recmodels.recommender import no_purchases
from recmodels.sequences import EVENT_TYPES

RECORDED_COLUMNS = ("event_id", "user_id", "session_id", "item_id", "event_type", "occurred_at", "quantity", "price")
SEQUENCE = "recorded"  # the order events were recorded in: the event log's order, which ingestion keeps


@dataclass(frozen=True)
class Customer:
    """What one user key has done, the warehouse's events and those recorded since: what its answers read."""

    events: pd.DataFrame  # purchase_events rows, oldest first
    behaviour: pd.DataFrame  # behaviour_events rows
    history: np.ndarray | None  # the models' history; None: nothing the models read
    evidence: dict[str, np.ndarray]  # views and open carts, as Explainer.explain takes them
    as_of: pd.Timestamp  # its features read the events before this time


def _present(values: pd.Series) -> np.ndarray:
    """Whether each id is given: not null and not blank, as staging reads ids."""
    return (values.notna() & (values.astype(str).str.strip() != "")).to_numpy()


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
        times = pd.concat([self.purchases["occurred_at"], self.behaviour["occurred_at"]])
        return None if times.empty else pd.Timestamp(times.max())

    def since(self, sequence: int) -> Recorded:
        """The events recorded at ``sequence`` or later."""
        return Recorded(self.purchases[self.purchases[SEQUENCE] >= sequence],
                        self.behaviour[self.behaviour[SEQUENCE] >= sequence])

    def of(self, key: str) -> Recorded:
        """The events of one user key."""
        return Recorded(self.purchases[self.purchases["user_key"] == key],
                        self.behaviour[self.behaviour["user_key"] == key])

    @property
    def event_ids(self) -> set[str]:
        return {str(i) for frame in (self.purchases, self.behaviour) for i in frame[EVENT_ID].dropna()}

    @property
    def last_sequence(self) -> int:
        return int(max(self.purchases[SEQUENCE].to_numpy().max(initial=-1),
                       self.behaviour[SEQUENCE].to_numpy().max(initial=-1)))

    def without(self, event_ids: set[str]) -> Recorded:
        """These events but those whose id is in ``event_ids``, and but the first of each id."""
        def kept(frame: pd.DataFrame) -> pd.DataFrame:
            ids = frame[EVENT_ID]
            repeated = ids.notna().to_numpy() & ids.duplicated().to_numpy()
            return frame[~(ids.astype(str).isin(event_ids).to_numpy() & ids.notna().to_numpy()) & ~repeated]

        return Recorded(kept(self.purchases), kept(self.behaviour))

    @classmethod
    def joined(cls, batches: list[Recorded]) -> Recorded:
        """Several batches as one, in order."""
        batches = [batch for batch in batches if len(batch)]
        if not batches:
            return cls()
        return cls(pd.concat([b.purchases for b in batches], ignore_index=True),
                   pd.concat([b.behaviour for b in batches], ignore_index=True))


def recorded_rows(frame: pd.DataFrame, key: str, bundle: Bundle, first_sequence: int) -> Recorded:
    """``frame`` (``RECORDED_COLUMNS``: shop ids, event types of ``EVENT_TYPES``, tz-naive UTC times) as
    ``Recorded`` rows numbered from ``first_sequence``. An event with neither a customer nor a session id is left
    out, as dbt quarantines it; so is one of an item the bundle does not know. Missing quantities count 1, as in
    the marts."""
    missing = [name for name in RECORDED_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"events lack the columns {missing}; expected {list(RECORDED_COLUMNS)}")
    unknown = sorted({str(t) for t in frame["event_type"].unique() if t not in EVENT_TYPES})
    if unknown:
        raise ValueError(f"event_type {', '.join(map(repr, unknown))} is not one of {', '.join(EVENT_TYPES)}")
    frame = frame.reset_index(drop=True).assign(**{SEQUENCE: np.arange(first_sequence, first_sequence + len(frame))})
    customer, session = _present(frame["user_id"]), _present(frame["session_id"])
    frame = frame[customer | session]
    users = [pseudonymize(user, key) if has_user else pseudonymize_session(sess, key)
             for user, sess, has_user in zip(frame["user_id"], frame["session_id"], customer[customer | session])]
    items = bundle.internal_ids(frame["item_id"].to_numpy())
    known = items != 0
    times = pd.to_datetime(frame["occurred_at"])
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    rows = pd.DataFrame({
        "user_key": np.asarray(users, dtype=object), "item": items,
        "occurred_at": times.to_numpy().astype("datetime64[ns]"),
        "quantity": pd.to_numeric(frame["quantity"]).fillna(1.0).to_numpy(np.float64),
        "unit_price": pd.to_numeric(frame["price"]).to_numpy(np.float64),
        # A posted purchase's basket is its session, as dbt has it for generic interactions.
        "basket_id": np.where(session[customer | session], frame["session_id"].astype(str).str.strip(), None),
        "event_type": frame["event_type"].to_numpy(),
        EVENT_ID: frame["event_id"].to_numpy(dtype=object), SEQUENCE: frame[SEQUENCE].to_numpy(np.int64),
    })[known]
    bought = rows["event_type"].to_numpy() == EVENT_TYPES[0]
    purchases = rows[bought].drop(columns="event_type").reset_index(drop=True)
    behaviour = rows[~bought & rows["event_type"].isin(BEHAVIOURS).to_numpy()]
    return Recorded(purchases, behaviour.drop(columns=["unit_price", "basket_id"]).reset_index(drop=True))


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


def with_recorded(before: Customer, recorded: Recorded, bundle: Bundle, shop_has_behaviour: bool) -> Customer:
    """``before`` with one key's recorded events added: purchases, behaviour, history and evidence rebuilt as the
    warehouse's are (``ShopData.read``), the cut-off moved to one second after the newest event, if later.
    ``shop_has_behaviour``: whether the shop's histories are tokens already (models reading behaviour)."""
    events, behaviour = merged(before.events, recorded.purchases), merged(before.behaviour, recorded.behaviour)
    as_tokens = bundle.recommender.config.sequence_behaviour and (shop_has_behaviour or len(behaviour) > 0)
    key = next(iter(recorded.keys))
    history = model_histories(bundle, events, behaviour, as_tokens).get(key)
    viewed, in_cart = behaviour_evidence(behaviour, events)
    return Customer(events, behaviour, history, {"viewed": viewed, "in_cart": in_cart},
                    max(before.as_of, recorded.newest + pd.Timedelta(seconds=1)))


def merged(frame: pd.DataFrame, more: pd.DataFrame) -> pd.DataFrame:
    """``frame`` and ``more`` (its columns only) in time order; equal times keep ``frame``'s rows first."""
    if not len(more):
        return frame
    combined = pd.concat([frame, more[list(frame.columns)]], ignore_index=True)
    return combined.sort_values("occurred_at", kind="stable").reset_index(drop=True)
