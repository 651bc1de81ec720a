"""Recommendations as JSON bytes: a customer's straight from their kept ``TOP`` rows, a session's from its rows.

The busiest route answers from a lookup, so its cost is the response itself: built here from the rows with orjson,
it takes a few tens of microseconds, where a frame, pydantic models and their validation took about a
millisecond. The bytes are the ``UserRecommendations`` and ``SessionRecommendations`` schemas', field for field
(tests compare them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pandas as pd

from orchestration.serving.service import RecommendationService
from recmodels.explain import KINDS, Explanation, sentence

DIGITS = 6  # decimals kept of scores and similarities: more is noise in JSON


def number(value: Any, digits: int = DIGITS) -> float | None:
    """A finite float rounded to ``digits``; None for missing, NaN and infinities (JSON has no NaN)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def item_rows(service: RecommendationService, top: np.ndarray) -> list[dict[str, object]]:
    """``TOP`` rows as the schema's ``RecommendedItem`` dicts: what ``answers.described`` gives, without a frame."""
    answers, bundle = service.answers, service.bundle
    items, anchors = top["item"].astype(np.int64), top["anchor"].astype(np.int64)
    item_ids, anchor_ids = bundle.shop_ids(items), bundle.shop_ids(anchors)
    titles, anchor_labels = answers.labels(items), answers.labels(anchors)
    rows = []
    for rank, (item_id, title, score, kind_code, anchor, anchor_id, strength, label) in enumerate(zip(
            item_ids, titles, top["score"].tolist(), top["kind"].tolist(), anchors.tolist(), anchor_ids,
            top["strength"].tolist(), anchor_labels), start=1):
        kind = KINDS[kind_code]
        rows.append({"rank": rank, "item_id": str(item_id), "title": str(title),
                     "score": round(score, DIGITS) if math.isfinite(score) else None,
                     "explanation": kind, "because_of": None if anchor_id is None else str(anchor_id),
                     "reason": sentence(Explanation(kind, anchor, strength), label)})
    return rows


def user_json(service: RecommendationService, version: int, shop_customer_id: str, k: int,
              rank: bool = True) -> bytes | None:
    """``GET /recommendations/{user_id}``'s body (``k`` checked by the route); without ``rank``, None where the
    answer would have to be ranked now (the caller then ranks it off the event loop)."""
    found = service.user_top(shop_customer_id, rank)
    if found is None:
        return None
    top, history_length = found
    known = history_length is not None
    return orjson.dumps({
        "user_id": str(shop_customer_id), "known_user": known,
        "strategy": "two-stage" if known else f"fallback:{service.fallback}", "history_length": history_length,
        "model_version": int(version), "items": item_rows(service, top[:k])})


def text(value: Any) -> str | None:
    """A string, or None for missing and NaN."""
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def frame_items(frame: pd.DataFrame) -> list[dict[str, object]]:
    """``answers.described`` rows as the schema's ``RecommendedItem`` dicts, column by column."""
    return [{"rank": int(rank), "item_id": str(item_id), "title": str(title), "score": number(score),
             "explanation": text(kind), "because_of": text(anchor), "reason": text(reason)}
            for rank, item_id, title, score, kind, anchor, reason in zip(
                *(frame[name].tolist() for name in ("rank", "item_id", "title", "score", "explanation",
                                                    "because_of", "reason")))]


def session_json(service: RecommendationService, answer: dict[str, Any], version: int) -> bytes:
    """``POST /recommendations/session``'s body from the service's answer (items as a frame or, cheaper, as ``TOP``
    rows): the ``SessionRecommendations`` schema's JSON, field for field, without building and validating its
    models."""
    items = answer["items"]
    return orjson.dumps({
        "strategy": answer["strategy"], "user_id": answer.get("user_id"), "known_user": answer.get("known_user"),
        "unknown_items": [str(i) for i in answer["unknown_items"]],
        "text_only_items": [str(i) for i in answer["text_only_items"]], "model_version": int(version),
        "items": item_rows(service, items) if isinstance(items, np.ndarray) else frame_items(items)})
