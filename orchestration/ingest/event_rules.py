"""The rules a generic event meets, checked one event at a time before it is written (``POST /events``).

The dbt models are the rules for files: staging parses (``transforms/macros/parse.sql``, ``text.sql``) and
``int_interactions__classified`` rejects with the first failed check. This module mirrors them in Python, so
that an event the API accepts is one dbt keeps, and one it rejects names the field dbt's reason is about; the
behaviours' names and the event window are read from ``transforms/dbt_project.yml``, not copied.
``tests/integration/test_api_events.py`` gives hand-written edge cases to both and compares the verdicts.

Where the API asks more than a file: ``event_id`` is required (it is what makes a retry harmless),
``event_type`` is required (an omitted behaviour is a client's bug more often than a purchase, and purchases
are what the models learn to predict), times are ISO-8601 only (files may also hold epoch seconds and US
dates), and no id may hold a line break or a NUL, so every event is one line of the log. What it cannot check:
whether the item is in the catalogue (dbt's ``unknown_item``).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from orchestration.store.privacy import normalize_customer_id

DBT_PROJECT = Path(__file__).resolve().parents[2] / "transforms" / "dbt_project.yml"
# The texts exports write for an empty cell (macro null_if_token), compared lower-cased.
NULL_TOKENS = ("", "nan", "none", "null")
# Lower-casing never shortens text, so longer text is no token (and is not lower-cased to find out).
_TOKEN_LENGTH = max(map(len, NULL_TOKENS))
ID_FIELDS = ("event_id", "user_id", "session_id", "item_id")
FIELDS = (*ID_FIELDS, "event_type", "timestamp", "quantity", "price")
_LINE_BREAKS = re.compile(r"[\r\n\x00]")
# Macro parse_timestamp's ISO layouts: date, optional time (seconds and fraction optional), optional offset.
_ISO = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})"
    r"(?:[ T](?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?)?)?"
    r"(?P<offset>Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
_INTEGER = re.compile(r"[+-]?[0-9]{1,9}(\.0*)?")  # macro parse_integer: "6.0" is 6; at most 9 digits
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")  # macro parse_number
ISO_EXAMPLE = "2024-05-01T12:30:00Z"


@dataclass(frozen=True)
class EventRules:
    """What dbt accepts: the names of each behaviour and the event window."""

    names: Mapping[str, str]  # event type name, lower-cased -> behaviour
    behaviours: tuple[str, ...]  # view, cart, favourite, purchase (var event_types' keys)
    min_event_at: datetime  # var min_event_at: earlier events are clock errors
    future_tolerance: timedelta  # var future_tolerance_days: how far past now an event may be stamped

    @classmethod
    def from_project(cls, extra: Mapping[str, str] | None = None, project: Path = DBT_PROJECT) -> EventRules:
        """The dbt project's vars, plus a shop's own names (``extra``: the pipeline passes the same ones to
        dbt as var extra_event_types, from RECSYS_EVENT_TYPES or the data_source resource)."""
        variables = yaml.safe_load(Path(project).read_text())["vars"]
        names = {alias.lower(): behaviour for behaviour, aliases in variables["event_types"].items()
                 for alias in aliases}
        shop = {**(variables.get("extra_event_types") or {}), **(extra or {})}
        names.update({name.lower(): behaviour for name, behaviour in shop.items()})
        return cls(names, tuple(variables["event_types"]), datetime.fromisoformat(variables["min_event_at"]),
                   timedelta(days=int(variables["future_tolerance_days"])))


@dataclass(frozen=True)
class Event:
    """An accepted event, its values as the warehouse will read them, and the line that records it."""

    event_id: str  # trimmed
    user_id: str | None  # trimmed (pseudonymisation drops a trailing ".0", here as in the marts)
    session_id: str | None  # trimmed
    item_id: str  # trimmed, a trailing ".0" dropped, as the catalogue's ids are
    event_type: str  # the behaviour
    occurred_at: datetime  # naive UTC
    quantity: int | None
    price: float | None
    # The generic format's fields in FIELDS order: ids as sent but trimmed (dbt normalises them once, as it
    # does a file's), the behaviour, the time in UTC with its "Z" spelled out, numbers in their shortest text.
    line: tuple[str | None, ...]


@dataclass(frozen=True)
class Rejection:
    field: str  # the field the rule is about
    code: str  # dbt's rejection reason (missing_user ...), or an API-only rule (missing_event_id ...)
    reason: str  # a sentence naming the value and what was expected


def cell_text(value: Any) -> str | None:
    """A JSON value as the text a file's cell would hold: numbers in Python's rendering, as ingest renders
    typed cells (``6``, ``2.55``); true/false; NaN and null are no value; lists and objects as JSON."""
    if value.__class__ is str:  # nearly every value: one test
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return value if isinstance(value, str) else json.dumps(value)


def _token(text: str | None) -> str | None:
    """Macro null_if_token: NULL for empty text and the null tokens."""
    return None if text is None or (len(text) <= _TOKEN_LENGTH and text.lower() in NULL_TOKENS) else text


def normalize_id(text: str | None) -> str | None:
    """Macros normalize_id then null_if_token: stripped, a trailing ".0" dropped ("17850.0" -> "17850")."""
    if text is None:
        return None
    stripped = text.strip()
    # Only text ending in "0" can end in ".0": the others skip the regular expression.
    return _token(normalize_customer_id(stripped) if stripped.endswith("0") else stripped)


@functools.lru_cache(maxsize=4096)  # a batch's events often share their time; the result is immutable
def parse_timestamp(text: str) -> datetime | None:
    """An ISO-8601 time as naive UTC, the way macro parse_timestamp and DuckDB's casts read it; None when it
    is not one. An offset (``Z``, ``+01:00``, ``+0100``, ``+01``) is converted to UTC; a time without one is
    taken as UTC already. 24:00 is the next midnight; fractions past microseconds are cut. Times DuckDB can
    hold but Python cannot (year 0, past 9999 after the offset) come back as ``datetime.min``/``max``: outside
    any event window."""
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    part = {name: int(value) for name, value in match.groupdict().items()
            if value is not None and name not in ("fraction", "offset")}
    offset, fraction = match["offset"], match["fraction"] or ""
    if offset is not None and "hour" not in part:
        return None  # DuckDB reads no offset after a bare date
    year = part["year"]
    try:
        day = datetime(year or 2000, part["month"], part["day"])  # year 0 is a leap year, as 2000 is
    except ValueError:
        return None
    hour, minute, second = part.get("hour", 0), part.get("minute", 0), part.get("second", 0)
    end_of_day = hour == 24 and minute == second == 0 and not fraction.strip("0")
    if minute > 59 or second > 59 or (hour > 23 and not end_of_day):
        return None
    if year == 0:
        return datetime.min
    moment = day + timedelta(hours=hour, minutes=minute, seconds=second,
                             microseconds=int(fraction[:6].ljust(6, "0")))
    if offset not in (None, "Z"):
        digits = offset[1:].replace(":", "")
        shift = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        try:
            moment = moment - shift if offset[0] == "+" else moment + shift
        except OverflowError:
            return datetime.min if offset[0] == "+" else datetime.max
    return moment


@functools.lru_cache(maxsize=4096)  # as parse_timestamp: a batch's events often share their time
def utc_text(moment: datetime) -> str:
    """A naive UTC time as the log writes it: ISO-8601 to the microsecond, "Z" spelled out."""
    return moment.isoformat(timespec="microseconds") + "Z"


def parse_integer(text: str) -> int | None:
    return int(re.sub(r"\.0*$", "", text)) if _INTEGER.fullmatch(text) else None


def parse_number(text: str) -> float | None:
    if not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _shown(value: Any, limit: int = 60) -> str:
    """A value for a message: JSON's null for none, else quoted and cut to ``limit`` characters."""
    text = "null" if value is None else repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _reject(field: str, code: str, value: Any, problem: str, expected: str) -> Rejection:
    return Rejection(field, code, f"{field} {_shown(value)} {problem}; expected {expected}")


def check_event(values: Mapping[str, Any], rules: EventRules, now: datetime) -> Event | Rejection:
    """The event ``values`` (FIELDS; JSON values) describe, or why not: the first rule it fails, in the order
    of int_interactions__classified. ``now``: naive UTC, the end of the event window's tolerance."""
    text = {name: cell_text(values.get(name)) for name in FIELDS}
    ids = {name: None if text[name] is None else text[name].strip() for name in ID_FIELDS}
    event_id = _token(ids["event_id"])
    if event_id is None:
        return _reject("event_id", "missing_event_id", text["event_id"], "is missing or blank",
                       "the shop's id of this event (a retry with the same id is stored once)")
    if _LINE_BREAKS.search("".join(value for value in ids.values() if value is not None)):  # which one, below
        for name in ID_FIELDS:
            if ids[name] is not None and _LINE_BREAKS.search(ids[name]):
                return _reject(name, "line_break", text[name], "holds a line break or a NUL", "one line of text")
    user_id, item_id = normalize_id(ids["user_id"]), normalize_id(ids["item_id"])
    session_id = _token(ids["session_id"])
    if user_id is None and session_id is None:
        return _reject("user_id", "missing_user", text["user_id"],
                       f"and session_id {_shown(text['session_id'])} are both missing",
                       "a customer id, or a session id for an anonymous visitor")
    if item_id is None:
        return _reject("item_id", "missing_item", text["item_id"], "is missing",
                       "the catalogue's id of the item")
    verdict = _check_values(text, rules, now)
    if isinstance(verdict, Rejection):
        return verdict
    behaviour, occurred_at, quantity, price = verdict
    shop_user = None if user_id is None else ids["user_id"]
    line = (event_id, shop_user, session_id, ids["item_id"], behaviour,
            utc_text(occurred_at),
            None if quantity is None else str(quantity), None if price is None else repr(price))
    return Event(event_id, shop_user, session_id, item_id, behaviour, occurred_at, quantity, price, line)


def _check_values(text: Mapping[str, str | None], rules: EventRules, now: datetime
                  ) -> tuple[str, datetime, int | None, float | None] | Rejection:
    """The behaviour, time, quantity and price of an event whose ids passed, or the first rule they fail."""
    occurred_at = parse_timestamp((text["timestamp"] or "").strip())
    if occurred_at is None:
        return _reject("timestamp", "unparseable_timestamp", text["timestamp"], "is not an ISO-8601 time",
                       f"e.g. {ISO_EXAMPLE} (an offset is converted to UTC; a time without one is UTC)")
    latest = now + rules.future_tolerance
    if not rules.min_event_at <= occurred_at <= latest:
        return _reject("timestamp", "timestamp_out_of_range", text["timestamp"],
                       "is outside the event window",
                       f"a time from {rules.min_event_at:%Y-%m-%d} to {latest:%Y-%m-%d %H:%M} UTC "
                       f"(now plus {rules.future_tolerance.days} day(s))")
    raw_quantity, raw_price = (text["quantity"] or "").strip(), (text["price"] or "").strip()
    quantity, price = parse_integer(raw_quantity), parse_number(raw_price)
    if quantity is None and _token(raw_quantity) is not None:
        return _reject("quantity", "unparseable_quantity", text["quantity"], "is not a whole number",
                       "a positive integer (or no quantity: 1)")
    if price is None and _token(raw_price) is not None:
        return _reject("price", "unparseable_price", text["price"], "is not a number",
                       "a unit price of 0 or more, such as 9.99 (or no price)")
    name = _token((text["event_type"] or "").strip().lower())
    known = f"one of {', '.join(rules.behaviours)} (or a name they are known by, such as click)"
    if name is None:
        return _reject("event_type", "missing_event_type", text["event_type"], "is missing", known)
    behaviour = rules.names.get(name, name)
    if behaviour not in rules.behaviours:
        return _reject("event_type", "unknown_event_type", text["event_type"], "is not a known behaviour",
                       known)
    if quantity is not None and quantity <= 0:
        return _reject("quantity", "non_positive_quantity", text["quantity"], "is not positive",
                       "a positive integer")
    if price is not None and price < 0:
        return _reject("price", "non_positive_price", text["price"], "is negative", "0 or more")
    return behaviour, occurred_at, quantity, price


def event_of_line(fields: tuple[str | None, ...]) -> Event:
    """The ``Event`` whose ``line`` is ``fields`` (FIELDS order, None for an empty field): a line the events log
    wrote, read back as ``check_event`` made it, without checking it again (it passed when it was accepted)."""
    event_id, user_id, session_id, item_id, behaviour, timestamp, quantity, price = fields
    occurred_at = datetime.fromisoformat(timestamp.removesuffix("Z"))  # utc_text's layout
    return Event(event_id, user_id, session_id, normalize_id(item_id), behaviour, occurred_at,
                 None if quantity is None else int(quantity), None if price is None else float(price), fields)
