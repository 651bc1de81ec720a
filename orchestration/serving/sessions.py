"""A session's typed events, and when they happened on the service's clock."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from recmodels.ranking.behaviour import BEHAVIOURS
from recmodels.sequences import EVENT_TYPES

# What a session's events may be, in the order messages list them (purchases, the target, last).
SESSION_EVENT_TYPES = (*BEHAVIOURS, EVENT_TYPES[0])


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
