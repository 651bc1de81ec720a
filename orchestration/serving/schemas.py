"""The serving API's request and response bodies (OpenAPI schemas) and the demo ids its examples use."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from orchestration.serving.service import MAX_K, SESSION_EVENT_TYPES
from recmodels.explain import KINDS

MAX_ID_LENGTH = 100  # characters of a customer or item id
MAX_SESSION_ITEMS = 200

# Ids of the default synthetic shop (`make demo`), so that the examples in /docs answer with data there: a
# customer with a few purchases, an item with neighbours bought together and described alike, and a session.
EXAMPLE_CUSTOMER = "10048"
EXAMPLE_ITEM = "11458"
EXAMPLE_SESSION = ["11458", "22320"]
EXAMPLE_EVENTS = [{"item_id": "11458", "event_type": "view"}, {"item_id": "22320", "event_type": "cart"}]
UNKNOWN_ITEM = "NOT-AN-ITEM"

class ErrorDetail(BaseModel):
    """The app's own errors (400, 404, 503)."""

    detail: str = Field(description="What was wrong.")


class InvalidField(BaseModel):
    """One validation error, as FastAPI (pydantic) reports it."""

    type: str = Field(description="pydantic's error type, e.g. greater_than_equal.")
    loc: list[str | int] = Field(description="Where: path, query or body, then the field.")
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrors(BaseModel):
    """A 422: FastAPI's list of what was invalid."""

    detail: list[InvalidField]


TITLE = Field(description="The catalogue's title; the item id when the catalogue has none.")


class RecommendedItem(BaseModel):
    rank: int = Field(description="1 is the best.")
    item_id: str
    title: str = TITLE
    score: float | None = Field(description="Ranker score (higher is better); comparable within one response only.")
    explanation: str | None = Field(description=f"One of {', '.join(KINDS)}: the first that holds, strongest "
                                                "evidence first (recmodels/explain.py).")
    because_of: str | None = Field(description="The customer's item behind the explanation, when there is one.")
    reason: str | None = Field(description="The explanation as a sentence for the shopper.")


class UserRecommendations(BaseModel):
    user_id: str
    known_user: bool = Field(description="False: no purchases on record, the items are the popularity fallback.")
    strategy: str = Field(description="two-stage (candidates + ranker) or fallback:<popularity model>.")
    history_length: int | None = Field(None, description="Purchases the recommendations start from (known users).")
    model_version: int
    items: list[RecommendedItem]


class SessionRecommendations(BaseModel):
    strategy: str
    user_id: str | None = Field(None, description="The customer the session belongs to, when the request named one.")
    known_user: bool | None = Field(None, description="Whether that customer has purchases on record.")
    unknown_items: list[str] = Field(description="Session items with neither catalogue entry nor text: ignored.")
    text_only_items: list[str] = Field(description="Items the model never saw, standing in through their "
                                                   "nearest known item by description.")
    model_version: int
    items: list[RecommendedItem]


class SimilarItem(BaseModel):
    rank: int
    item_id: str
    title: str = TITLE
    score: float | None = Field(description="Mean of co_purchase and text_cosine, each in [0, 1].")
    co_purchase: float | None
    text_cosine: float | None


class SimilarItems(BaseModel):
    item_id: str
    title: str = TITLE
    known_item: bool = Field(description="False: outside the model's catalogue, matched by its description only.")
    model_version: int
    items: list[SimilarItem]


class Explanation(BaseModel):
    """The same rank, score, explanation and reason as the item has in /recommendations/{user_id}."""

    user_id: str
    item_id: str
    title: str = TITLE
    known_user: bool
    explanation: str
    because_of: str | None
    because_of_title: str | None = Field(description="The anchor's title (its id when it has none).")
    reason: str
    strength: float | None = Field(description="The similarity behind the explanation (1 for in_cart, "
                                               "bought_before and viewed).")
    candidate: bool = Field(description="Whether the item is among the customer's ranked items at all (every item is "
                                        "for the popularity fallback).")
    rank: int | None = Field(description="Its rank among them, when it is one.")
    score: float | None
    features: dict[str, float | None] = Field(description="The ranker's features for this pair (none for the "
                                                          "popularity fallback).")
    model_version: int


class PopularItems(BaseModel):
    strategy: str = Field(description="fallback:<popularity model>: what a customer without purchases gets.")
    model_version: int
    items: list[RecommendedItem]


class Purchase(BaseModel):
    item_id: str
    title: str = TITLE
    occurred_at: str
    quantity: float | None


class CustomerHistory(BaseModel):
    user_id: str
    known_user: bool = Field(description="False: no purchases on record.")
    purchases: int = Field(description="Purchases on record of items the model knows.")
    items: list[Purchase] = Field(description="The latest of them, newest first.")


class ModelInfo(BaseModel):
    model: str
    version: int
    metrics: dict[str, float | None] = Field(description="Test metrics it was promoted with.")
    measured_at: str | None = Field(description="When those metrics were measured (its training run ended).")
    data_version: str | None
    promoted_at: str | None
    promotion_reasons: list[str] = Field(description="Why the promotion gate let it through.")
    previous_champions: list[int] = Field(description="Earlier champion versions, oldest first (rollback order).")
    run_id: str | None
    serves: str = Field(description="What orders the candidates: 'ranker' (the LightGBM re-ranker over every "
                                     "source) or the one source that won the evaluation, alone (e.g. 'buy-again').")
    sources: list[str] = Field(description="Candidate sources, in the ranker's feature order.")
    n_candidates: int | None
    recent_items: int | None
    features: list[str] = Field(description="The ranker's features.")
    split: str | None
    test_cutoff: str | None
    as_of: str = Field(description="Features are computed as of this time (just after the newest event).")


class Health(BaseModel):
    status: str
    model_version: int
    as_of: str = Field(description="One second after the newest event served: the warehouse's or one posted to "
                                   "/events since.")
    data_as_of: str = Field(description="One second after the warehouse's newest event.")
    data_version: str | None = Field(None, description="Fingerprint of the marts being served; it changes when new "
                                                       "data has been loaded.")


ShopIdText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH)]


class SessionEvent(BaseModel):
    item_id: ShopIdText
    event_type: str = Field(description=f"What the session did to the item: one of {', '.join(SESSION_EVENT_TYPES)}.")
    timestamp: datetime | None = Field(None, description="When (ISO-8601). Give it on every event or on none; "
                                                         "without, events count in the order given.")

    model_config = ConfigDict(coerce_numbers_to_str=True)

    @field_validator("event_type")
    @classmethod
    def _known_behaviour(cls, value: str) -> str:
        behaviour = value.strip().lower()
        if behaviour not in SESSION_EVENT_TYPES:
            raise ValueError(f"unknown event_type {value!r}; allowed: {', '.join(SESSION_EVENT_TYPES)}")
        return behaviour


class SessionRequest(BaseModel):
    """A session's items (the original shape: viewed or bought, oldest first), or its typed events."""

    # Numeric stock codes sent as JSON numbers are still ids (model_config below).
    items: list[ShopIdText] | None = Field(
        None, min_length=1, max_length=MAX_SESSION_ITEMS,
        description="Items viewed or bought, oldest first (none is said to be bought). Give items or events.")
    events: list[SessionEvent] | None = Field(
        None, min_length=1, max_length=MAX_SESSION_ITEMS,
        description="Typed events: views, carts and favourites feed the ranker's behaviour features and the "
                    "explanations, purchases its purchase features. Give items or events.")
    user_id: ShopIdText | None = Field(None, description="The customer the session belongs to (events only): its "
                                                         "events add to theirs. None: an anonymous session.")
    k: int = Field(10, ge=1, le=MAX_K)

    model_config = ConfigDict(coerce_numbers_to_str=True, json_schema_extra={"examples": [
        {"items": EXAMPLE_SESSION, "k": 5}, {"events": EXAMPLE_EVENTS, "k": 5}]})

    @model_validator(mode="after")
    def _items_or_events(self) -> SessionRequest:
        if (self.items is None) == (self.events is None):
            raise ValueError("give either items or events (one of the two)")
        if self.user_id is not None and self.events is None:
            raise ValueError("user_id needs events: a customer's session is told by its typed events")
        if self.events is not None and len({e.timestamp is None for e in self.events}) > 1:
            raise ValueError("timestamp: give every event a timestamp, or none")
        return self
