"""``POST /events``: a shop's events in, checked as the dbt models check a file, durable before the answer.

Accepted events are appended to the events log (``orchestration.ingest.event_log``): generic-format files in the
landing folder that the landing sensor ingests, where ``event_id`` makes a retried post count once. Then the
champion holder records them in the served service (``ChampionHolder.record_events``), so a customer's next answer
reflects them before the warehouse does. Events are taken whether or not a champion is served.
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from orchestration.ingest.event_log import EventLog, EventLogError, EventLogSettings, EventSettingError
from orchestration.ingest.event_rules import Event, EventRules, Rejection, check_event
from orchestration.ingest.sources import shop_event_types
from orchestration.serving.auth import EVENTS, ApiAccess
from orchestration.serving.limits import MAX_BODY_BYTES
from orchestration.serving.peers import PeerEvents
from orchestration.serving.schemas import MAX_ID_LENGTH, ErrorDetail, ValidationErrors
from orchestration.store.paths import recsys_paths

logger = logging.getLogger(__name__)

MAX_EVENTS = 1_000  # events per request

# Trimmed as dbt trims ids; longer than the cap is a malformed body (422), blank is a rejected event.
EventIdText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_ID_LENGTH)]


class EventIn(BaseModel):
    """One event in the generic format's fields; ids are the shop's own. Other fields are ignored."""

    event_id: EventIdText | None = Field(None, description="The shop's id of the event (required): a post retried "
                                                            "with the same ids is stored once.")
    user_id: EventIdText | None = Field(None, description="The customer; may be left out when session_id is given "
                                                          "(an anonymous visitor).")
    session_id: EventIdText | None = Field(None, description="The visit (the basket of a purchase).")
    item_id: EventIdText | None = Field(None, description="The catalogue's id of the item (required).")
    event_type: JsonValue = Field(None, description="view, cart, favourite or purchase, or a name they are known by "
                                                    "(click, add_to_cart, wishlist, buy...; RECSYS_EVENT_TYPES adds "
                                                    "a shop's own). Required.")
    timestamp: JsonValue = Field(None, description="ISO-8601 (required): with an offset it is converted to UTC, "
                                                   "without one it is taken as UTC.")
    quantity: JsonValue = Field(None, description="A positive integer; 1 when left out.")
    price: JsonValue = Field(None, description="The unit price, 0 or more; optional.")

    model_config = ConfigDict(coerce_numbers_to_str=True)


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)

    model_config = ConfigDict(json_schema_extra={"examples": [{"events": [
        {"event_id": "web-0001", "user_id": "10048", "item_id": "11458", "event_type": "view",
         "timestamp": "2024-05-01T12:30:00Z"},
        {"event_id": "web-0002", "session_id": "visit-77", "item_id": "22320", "event_type": "add_to_cart",
         "timestamp": "2024-05-01T14:31:05+02:00", "quantity": 2, "price": 4.95}]}]})


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the batch, from 0.")
    field: str = Field(description="The field the failed rule is about.")
    reason: str = Field(description="The value and what was expected.")


class EventsAnswer(BaseModel):
    accepted: int = Field(description="Events written durably (in the landing folder) before this answer.")
    rejected: list[RejectedEvent] = Field(description="Events not taken, each with the first rule it fails.")


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "A body JSON cannot parse at all (nested too deep)"},
    401: {"model": ErrorDetail, "description": "No valid bearer token (where tokens are configured)"},
    403: {"model": ErrorDetail, "description": "A valid token without the 'events' scope"},
    413: {"model": ErrorDetail, "description": f"A body over {MAX_BODY_BYTES:,} bytes"},
    422: {"model": ValidationErrors, "description": f"A malformed body: not JSON, no events list, 0 or more than "
                                                    f"{MAX_EVENTS:,} events, an event that is not an object, an id "
                                                    f"over {MAX_ID_LENGTH} characters"},
    503: {"model": ErrorDetail, "description": "The events could not be written durably: none was accepted"},
}


def record_served(app: FastAPI, events: list[Event]) -> None:
    """Tell the champion holder about durable events, so the served customer's next answer reflects them; the
    holder records them under the lock of its swaps, so a reload in between loses none. The events are already
    in the log, so a failure here is logged, never the request's."""
    holder = getattr(app.state, "champion", None)
    if holder is None or holder.current is None:  # nothing served yet: the warehouse will have them
        return
    try:
        holder.record_events(events)
    except Exception:
        logger.exception("The served model could not record %d new events (they are stored all the same)",
                         len(events))


def catch_up(app: FastAPI) -> None:
    """Record the events the other server processes sharing the landing folder took since the last look
    (``PeerEvents``), so that an answer reflects an acknowledged event whichever worker took it. A failure to
    read them is logged, never the request's: the events are stored all the same."""
    peers = getattr(app.state, "peer_events", None)
    if peers is None:
        return
    try:
        events = peers.poll()
    except OSError:
        logger.exception("The other workers' events could not be read")
        return
    if events:
        record_served(app, events)


def event_settings() -> tuple[EventLogSettings, EventRules]:
    """The events log's settings (``RECSYS_EVENTS_*``) and the rules events meet (with ``RECSYS_EVENT_TYPES``),
    from the environment; ``EventSettingError`` naming the variable when one is malformed, so ``recsys serve``
    can stop with that one line before it listens."""
    try:
        extra = shop_event_types()
    except ValueError as error:
        raise EventSettingError(str(error)) from None
    return EventLogSettings.from_environment(), EventRules.from_project(extra)


def add_event_route(app: FastAPI, access: ApiAccess, home: str | None) -> EventLog:
    """Register ``POST /events`` on ``app`` and the events log it appends to, in ``home``'s landing folder (also
    ``app.state.event_log``; the other processes' files there are followed by ``app.state.peer_events``). The log
    lives as long as the app's lifespan: opened before it starts (recovering what a killed server left open),
    closed after it ends (sealing the open file)."""
    settings, rules = event_settings()
    event_log = EventLog(recsys_paths(home).landing_dir, settings)
    app.state.event_log = event_log
    app.state.peer_events = PeerEvents(event_log.folder, event_log.owns)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        with event_log:
            async with inner(app) as state:
                yield state

    app.router.lifespan_context = lifespan

    @app.post("/events", response_model=EventsAnswer, dependencies=[Depends(access.requirement(EVENTS))],
              responses=RESPONSES)
    def post_events(batch: EventBatch, request: Request) -> EventsAnswer:
        """Events in (1 to 1,000): each is checked as the pipeline checks a file's rows, the good ones are written
        durably (fsynced) before the answer, the others are listed with their index, field and reason. Stored
        events reach the warehouse when the landing sensor ingests them; an event_id already stored counts once."""
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        accepted, rejected = [], []
        for index, event in enumerate(batch.events):
            verdict = check_event(vars(event), rules, now)  # the fields as parsed: dict() or model_dump costs more
            if isinstance(verdict, Rejection):
                rejected.append(RejectedEvent(index=index, field=verdict.field, reason=verdict.reason))
            else:
                accepted.append(verdict)
        if accepted:
            try:
                event_log.append([event.line for event in accepted])
            except EventLogError as error:
                logger.error("POST /events: %s", error)
                raise HTTPException(503, f"The events could not be stored, so none was accepted: {error}") from None
            record_served(request.app, accepted)
        return EventsAnswer(accepted=len(accepted), rejected=rejected)

    return event_log
