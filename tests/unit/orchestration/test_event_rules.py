"""The Python mirror of the dbt rules for one event: times read as DuckDB reads them, the first failed rule in
the classification's order, and the API's own rules. The dbt side of the same cases:
tests/integration/test_api_events.py."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import yaml

from orchestration.ingest.event_rules import (
    DBT_PROJECT,
    Event,
    EventRules,
    Rejection,
    cell_text,
    check_event,
    parse_timestamp,
)

NOW = datetime(2026, 1, 1, 12, 0)
RULES = EventRules.from_project()
GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": "2024-05-01T12:30:00Z"}


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30)),
    ("2024-05-01 12:30", datetime(2024, 5, 1, 12, 30)),  # no offset: taken as UTC
    ("2024-05-01", datetime(2024, 5, 1)),
    ("2024-5-1 7:05", datetime(2024, 5, 1, 7, 5)),
    ("2024-05-01T12:30:00+02:00", datetime(2024, 5, 1, 10, 30)),
    ("2024-05-01T12:30:00-0130", datetime(2024, 5, 1, 14, 0)),
    ("2024-05-01T12:30+01", datetime(2024, 5, 1, 11, 30)),
    ("2024-05-01T12:30:00.1234567Z", datetime(2024, 5, 1, 12, 30, 0, 123456)),  # cut, not rounded
    ("2024-05-01T24:00:00", datetime(2024, 5, 2)),
    ("0000-01-01", datetime.min),  # DuckDB's 1 BC: before any window
    ("2024-05-01T24:00:01", None),
    ("2024-05-01 23:60", None),
    ("2024-02-30", None),
    ("2024-05-01Z", None),  # DuckDB reads no offset after a bare date
    ("2024-05-01T12:30:00.", None),
    ("1714566600", None),  # epoch seconds: files only
    ("5/1/2024 12:30", None),  # US layout: files only
    ("soon", None),
])
def test_times_read_as_duckdb_reads_them(text, expected):
    assert parse_timestamp(text) == expected


def test_json_values_become_the_text_a_file_cell_would_hold():
    assert [cell_text(v) for v in (None, float("nan"), True, 6, 6.0, 2.55, "x", [1])] == [
        None, None, "true", "6", "6.0", "2.55", "x", "[1]"]


def test_the_behaviours_and_window_are_the_dbt_projects():
    variables = yaml.safe_load(DBT_PROJECT.read_text())["vars"]
    assert RULES.behaviours == tuple(variables["event_types"])
    assert all(RULES.names[name] == behaviour for behaviour, names in variables["event_types"].items()
               for name in names)
    assert RULES.min_event_at == datetime.fromisoformat(variables["min_event_at"])
    assert RULES.future_tolerance == timedelta(days=variables["future_tolerance_days"])
    shop = EventRules.from_project({"Tap": "view"})
    assert check_event({**GOOD, "event_type": " TAP "}, shop, NOW).event_type == "view"
    assert check_event({**GOOD, "event_type": "tap"}, RULES, NOW).code == "unknown_event_type"


def test_an_accepted_event_and_its_line():
    event = check_event({"event_id": " e1 ", "user_id": 17850.0, "item_id": " 85123A.0 ", "event_type": "Add_To_Cart",
                         "timestamp": "2024-05-01T12:30:00+02:00", "quantity": "6.0", "price": 2.550}, RULES, NOW)
    assert event == Event("e1", "17850.0", None, "85123A", "cart", datetime(2024, 5, 1, 10, 30), 6, 2.55,
                          ("e1", "17850.0", None, "85123A.0", "cart", "2024-05-01T10:30:00.000000Z", "6", "2.55"))
    anonymous = check_event({**GOOD, "user_id": "nan", "session_id": " s1 "}, RULES, NOW)
    assert (anonymous.user_id, anonymous.session_id, anonymous.line[1:3]) == (None, "s1", (None, "s1"))
    assert check_event({**GOOD, "quantity": None, "price": "NULL"}, RULES, NOW).quantity is None


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"event_id": "  "}, "event_id", "missing_event_id"),
    ({"event_id": None}, "event_id", "missing_event_id"),
    ({"item_id": "a\nb"}, "item_id", "line_break"),
    ({"session_id": "s\x00"}, "session_id", "line_break"),
    ({"user_id": " ", "session_id": "None"}, "user_id", "missing_user"),
    ({"item_id": "nan", "timestamp": "soon"}, "item_id", "missing_item"),
    ({"timestamp": "2024-13-01"}, "timestamp", "unparseable_timestamp"),
    ({"timestamp": "1989-12-31T23:59:59Z"}, "timestamp", "timestamp_out_of_range"),
    ({"timestamp": "2026-01-02T12:00:01Z"}, "timestamp", "timestamp_out_of_range"),  # NOW + 1 day + 1 s
    ({"quantity": "6.5", "event_type": "like"}, "quantity", "unparseable_quantity"),
    ({"quantity": 1_000_000_000}, "quantity", "unparseable_quantity"),  # more than 9 digits
    ({"price": "2,55"}, "price", "unparseable_price"),
    ({"price": "inf"}, "price", "unparseable_price"),
    ({"event_type": None}, "event_type", "missing_event_type"),
    ({"event_type": "like", "quantity": 0}, "event_type", "unknown_event_type"),
    ({"quantity": "0", "price": "-1"}, "quantity", "non_positive_quantity"),
    ({"price": -0.01}, "price", "non_positive_price"),
])
def test_the_first_failed_rule_names_its_field(change, field, code):
    rejection = check_event({**GOOD, **change}, RULES, NOW)
    assert isinstance(rejection, Rejection) and (rejection.field, rejection.code) == (field, code)
    assert rejection.reason.startswith((field, "neither")) and "expected" in rejection.reason


def test_the_window_ends_a_day_after_now_inclusive():
    assert isinstance(check_event({**GOOD, "timestamp": "2026-01-02T12:00:00Z"}, RULES, NOW), Event)
    assert isinstance(check_event({**GOOD, "timestamp": "1990-01-01"}, RULES, NOW), Event)
