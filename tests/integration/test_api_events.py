"""POST /events: who may post, what a malformed body gets, each rule's rejection, the lines on disk, the served
model told; and, through the landing folder's ingest and dbt, a retried post stored once and the API's verdicts
equal to dbt's on hand-written edge cases. No champion is needed: events are taken before any model exists."""

from __future__ import annotations

import csv
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from fastapi.testclient import TestClient

from orchestration.apps.runner import materialize
from orchestration.defs.resources import DataSourceResource, WarehouseResource
from orchestration.defs.transforms import recsys_dbt_models
from orchestration.ingest.event_log import FILE_NAME, HEADER, OPEN_PREFIX, SEALED_PREFIX
from orchestration.ingest.event_rules import Event, EventRules, Rejection, check_event
from orchestration.ingest.landing import is_ignored_name, landing_kind, list_landing
from orchestration.ingest.loader import load_generic
from orchestration.ingest.sources import ingest_configured_source
from orchestration.serving.api import Served, create_app
from orchestration.serving.auth import ApiAccess
from orchestration.serving.events import MAX_EVENTS
from orchestration.serving.limits import MAX_BODY_BYTES
from orchestration.store.paths import recsys_paths
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY, pseudonymize
from orchestration.store.warehouse import Warehouse

READER = "reader-token-0123456789"
WRITER = "events-token-0123456789"
ADMIN = "admin-token-01234567890"
ACCESS = ApiAccess.from_environment({"RECSYS_API_TOKENS": f"{READER}:read,{WRITER}:events,{ADMIN}:admin+read+events"})
AS_WRITER = {"Authorization": f"Bearer {WRITER}"}


def event(event_id: str, **values) -> dict:
    return {"event_id": event_id, "user_id": "u1", "item_id": "i1", "event_type": "purchase",
            "timestamp": "2024-05-01T12:30:00Z", **values}


def ingest_landing(home: Path) -> None:
    """What the landing sensor's runs do, without waiting for files to settle: each landed entry ingest can read
    is loaded as its kind by ``ingest_configured_source`` (the raw_tables asset), then one dbt build."""
    landing = recsys_paths(str(home)).landing_dir
    with Warehouse(home=str(home)).connect() as con:
        for entry, members in list_landing(landing):
            kind = landing_kind(entry.name, members)
            if kind is not None and not is_ignored_name(entry.name):
                ingest_configured_source(con, kind, landing / entry.name, recsys_paths(str(home)).sources_dir)
    transform(home)


def transform(home: Path) -> None:
    result = materialize(dg.AssetSelection.assets(recsys_dbt_models),
                         resources={"warehouse": WarehouseResource(home=str(home)),
                                    "data_source": DataSourceResource(source="generic", data=str(home))},
                         instance=dg.DagsterInstance.ephemeral(), log_level="WARNING", stdout_log=home / "dbt.log")
    assert result.success


def _file_lines(client: TestClient) -> list[str]:
    folder = client.app.state.event_log.open_folder
    return [] if folder is None else (folder / FILE_NAME).read_text().splitlines()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The API on a fresh home (no champion, no warehouse), with a read, an events and an admin token."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECSYS_EVENTS_MAX_AGE_SECONDS", "3600")  # no rotation while a test reads the open file
        home = tmp_path_factory.mktemp("events") / "home"
        with TestClient(create_app(str(home), reload_seconds=3600, access=ACCESS)) as test_client:
            yield test_client


def test_posting_needs_a_token_with_the_events_scope(client):
    body = {"events": [event("auth-1")]}
    missing = client.post("/events", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/events", json=body, headers={"Authorization": "Bearer not-a-token-at-all-xx"}).status_code == 401
    read_only = client.post("/events", json=body, headers={"Authorization": f"Bearer {READER}"})
    assert read_only.status_code == 403 and read_only.json() == {
        "detail": "The token lacks the 'events' scope (it has read)."}
    for token in (WRITER, ADMIN):
        answer = client.post("/events", json=body, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.json() == {"accepted": 1, "rejected": []}
    assert client.get("/health").status_code == 503  # no champion: events are taken all the same


@pytest.mark.parametrize(("body", "status"), [
    (b"x" * (MAX_BODY_BYTES + 1), 413),
    ({"events": [event(f"e{n}") for n in range(MAX_EVENTS + 1)]}, 422),
    ({"events": []}, 422),
    ({"events": "e1"}, 422),
    ({"event": [event("e1")]}, 422),
    ([event("e1")], 422),
    ({"events": [event("e1"), "e2"]}, 422),  # an event that is not an object
    ({"events": [event("e1"), event("x" * 101)]}, 422),  # ids longer than the cap
    ({"events": [event("e1", item_id="x" * 101)]}, 422),
    ({"events": [event("e1", session_id=["s"])]}, 422),
    (b"not json", 422),
])
def test_a_malformed_body_is_refused_whole(client, body, status):
    before = _file_lines(client)
    sent = {"content": body} if isinstance(body, bytes) else {"json": body}
    answer = client.post("/events", **sent, headers={**AS_WRITER, "content-type": "application/json"})
    assert answer.status_code == status and "detail" in answer.json()
    assert _file_lines(client) == before  # nothing written


def test_a_valid_batch_is_on_disk_line_for_line_before_the_answer(client):
    before = _file_lines(client)
    batch = [event("valid-1", user_id=" 17850.0 ", item_id="85123A", event_type="Add_To_Cart",
                   timestamp="2024-05-01T14:30:00+02:00", quantity=6, price=2.55),
             event("valid-2", user_id=None, session_id="visit, 7", event_type="view", quantity=None),
             event("valid-3", timestamp="2024-05-01 12:30:05.5", quantity="6.0", price="0")]
    answer = client.post("/events", json={"events": batch}, headers=AS_WRITER)
    assert answer.status_code == 200 and answer.json() == {"accepted": 3, "rejected": []}
    lines = _file_lines(client)
    assert lines[0] == HEADER.decode().strip() and lines.count(lines[0]) == 1
    assert lines[len(before) or 1:] == [
        "valid-1,17850.0,,85123A,cart,2024-05-01T12:30:00.000000Z,6,2.55",
        'valid-2,,"visit, 7",i1,view,2024-05-01T12:30:00.000000Z,,',
        "valid-3,u1,,i1,purchase,2024-05-01T12:30:05.500000Z,6,0.0",
    ]


BAD_EVENTS = [  # (change, field): one event per rule
    ({"event_id": " "}, "event_id"),
    ({"item_id": "a\nb"}, "item_id"),
    ({"user_id": None, "session_id": "nan"}, "user_id"),
    ({"item_id": ""}, "item_id"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": 1714566600}, "timestamp"),
    ({"timestamp": "1980-01-01T00:00:00Z"}, "timestamp"),
    ({"quantity": 2.5}, "quantity"),
    ({"price": "free"}, "price"),
    ({"event_type": None}, "event_type"),
    ({"event_type": "like"}, "event_type"),
    ({"quantity": 0}, "quantity"),
    ({"price": -1}, "price"),
]


def test_each_bad_event_is_rejected_with_its_field_and_the_others_written(client):
    before = _file_lines(client)
    batch, expected = [], []
    for number, (change, field) in enumerate(BAD_EVENTS):
        batch.append(event(f"good-{number}"))
        batch.append({**event(f"bad-{number}"), **change})
        expected.append((2 * number + 1, field))
    answer = client.post("/events", json={"events": batch}, headers=AS_WRITER).json()
    assert answer["accepted"] == len(BAD_EVENTS)
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == expected
    assert all("expected" in r["reason"] for r in answer["rejected"])
    assert "'like'" in answer["rejected"][10]["reason"] and "view, cart, favourite, purchase" in answer["rejected"][10]["reason"]
    written = _file_lines(client)[len(before):]
    assert [line.split(",")[0] for line in written] == [f"good-{n}" for n in range(len(BAD_EVENTS))]


def test_concurrent_posts_never_interleave_lines(client):
    threads, posts, size = 6, 8, 10
    before = len(_file_lines(client))
    answers = []

    def post(thread: int) -> None:
        for number in range(posts):
            batch = [event(f"c{thread}-{number}-{i}", item_id="x" * 30) for i in range(size)]
            answers.append(client.post("/events", json={"events": batch}, headers=AS_WRITER).json())

    workers = [threading.Thread(target=post, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert answers == [{"accepted": size, "rejected": []}] * (threads * posts)
    rows = list(csv.reader(_file_lines(client)[before:]))
    assert all(len(row) == 8 and row[3] == "x" * 30 for row in rows)
    ids = [row[0] for row in rows]
    assert sorted(ids) == sorted(f"c{t}-{n}-{i}" for t in range(threads) for n in range(posts) for i in range(size))
    for start in range(0, len(ids), size):  # each request's events stay together, in order
        prefix = ids[start].rsplit("-", 1)[0]
        assert ids[start:start + size] == [f"{prefix}-{i}" for i in range(size)]


class Recorder:
    """Stands in for the service's ``record_events``: what it was given, or the failure it raises."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.batches: list[list[Event]] = []
        self.failure = failure

    def record_events(self, events: list[Event]) -> None:
        self.batches.append(events)
        if self.failure is not None:
            raise self.failure


def test_the_served_model_is_told_after_the_append_and_its_failure_is_not_the_requests(client, caplog):
    holder = client.app.state.champion
    recorder = Recorder()
    holder.current = Served(recorder, {"version": 1})
    try:
        batch = [event("told-1", user_id="17850.0", item_id="85123A.0", event_type="click",
                       timestamp="2024-05-01T14:30:00+02:00", price=2.5),
                 event("told-2", user_id=None, session_id="s9", quantity="3"),
                 event("told-3", event_type="like")]
        assert client.post("/events", json={"events": batch}, headers=AS_WRITER).json()["accepted"] == 2
        (told,) = recorder.batches  # the accepted events as checked: ids trimmed, the item's as the marts hold it
        fields = ("event_id", "user_id", "session_id", "item_id", "event_type", "occurred_at", "quantity", "price")
        assert [tuple(getattr(e, name) for name in fields) for e in told] == [
            ("told-1", "17850.0", None, "85123A", "view", datetime(2024, 5, 1, 12, 30), None, 2.5),
            ("told-2", None, "s9", "i1", "purchase", datetime(2024, 5, 1, 12, 30), 3, None),
        ]
        holder.current = Served(Recorder(RuntimeError("model busy")), {"version": 1})
        with caplog.at_level(logging.ERROR, logger="orchestration.serving.events"):
            answer = client.post("/events", json={"events": [event("told-4")]}, headers=AS_WRITER)
        assert answer.status_code == 200 and answer.json()["accepted"] == 1
        assert "could not record 1 new events" in caplog.text and _file_lines(client)[-1].startswith("told-4,")
    finally:
        holder.current = None


# ---- through ingest and dbt: a retried post stored once, and the API's verdicts equal dbt's

BASE = {"user_id": "u1", "item_id": "i1", "event_type": "purchase", "timestamp": "2024-05-01T12:30:00Z"}
# (values over BASE as a file's cells would hold them, the verdict both must give: kept or dbt's reason)
EDGE_CASES = [
    ({}, "kept"),
    ({"timestamp": "2024-5-1 7:05"}, "kept"),
    ({"timestamp": "2024-05-01T12:30:00+02:00"}, "kept"),
    ({"timestamp": "2024-05-01 12:30:00.1234567-0130"}, "kept"),
    ({"timestamp": "2024-05-01T24:00:00"}, "kept"),
    ({"timestamp": "2024-05-01T24:00:01"}, "unparseable_timestamp"),
    ({"timestamp": "2024-02-30 10:00"}, "unparseable_timestamp"),
    ({"timestamp": "2024-05-01Z"}, "unparseable_timestamp"),
    ({"timestamp": "2024-05-01 23:60"}, "unparseable_timestamp"),
    ({"timestamp": " soon "}, "unparseable_timestamp"),
    ({"timestamp": "1989-12-31 23:59:59"}, "timestamp_out_of_range"),
    ({"timestamp": "2999-01-01T00:00:00Z"}, "timestamp_out_of_range"),
    ({"timestamp": "0000-01-01"}, "timestamp_out_of_range"),
    ({"user_id": "nan", "session_id": " web-7 "}, "kept"),
    ({"user_id": " ", "session_id": "NULL"}, "missing_user"),
    ({"user_id": "17850.0"}, "kept"),
    ({"item_id": "None"}, "missing_item"),
    ({"item_id": " 85123A.0 "}, "kept"),
    ({"event_type": " Add_To_Cart "}, "kept"),
    ({"event_type": "WISHLIST"}, "kept"),
    ({"event_type": "like"}, "unknown_event_type"),
    ({"quantity": "6.0"}, "kept"),
    ({"quantity": "+3"}, "kept"),
    ({"quantity": "nan"}, "kept"),
    ({"quantity": "6.5"}, "unparseable_quantity"),
    ({"quantity": "1234567890"}, "unparseable_quantity"),
    ({"quantity": "0"}, "non_positive_quantity"),
    ({"quantity": "-2"}, "non_positive_quantity"),
    ({"price": "0"}, "kept"),
    ({"price": ".5"}, "kept"),
    ({"price": "1e3"}, "kept"),
    ({"price": "NULL"}, "kept"),
    ({"price": "2,55"}, "unparseable_price"),
    ({"price": "inf"}, "unparseable_price"),
    ({"price": "-0.01"}, "non_positive_price"),
    ({"item_id": "", "timestamp": "soon"}, "missing_item"),
    ({"quantity": "x", "event_type": "like"}, "unparseable_quantity"),
    ({"quantity": "0", "event_type": "like"}, "unknown_event_type"),
]
FIELD_OF = {"missing_user": "user_id", "missing_item": "item_id", "unparseable_timestamp": "timestamp",
            "timestamp_out_of_range": "timestamp", "unparseable_quantity": "quantity",
            "non_positive_quantity": "quantity", "unparseable_price": "price", "non_positive_price": "price",
            "unknown_event_type": "event_type"}
COLUMNS = ("event_id", "user_id", "session_id", "item_id", "event_type", "timestamp", "quantity", "price")
KEPT = sum(verdict == "kept" for _, verdict in EDGE_CASES)
RETRIED = [event(f"retry-{n}", item_id=f"r{n}", timestamp=f"2024-05-02T10:00:0{n}Z") for n in range(5)]


def _edge_values(number: int, prefix: str) -> dict:
    change, _ = EDGE_CASES[number]
    return {"event_id": f"{prefix}-{number:02d}", **BASE, **change}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(home, the API's answer to the edge cases, when it answered): the edge cases posted to the API and written
    as a shop's own file, a batch posted twice, everything ingested and built by dbt."""
    tmp = tmp_path_factory.mktemp("events-dbt")
    home = tmp / "home"
    with TestClient(create_app(str(home), reload_seconds=3600, access=ACCESS)) as api:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        edge = [_edge_values(n, "api") for n in range(len(EDGE_CASES))]
        answer = api.post("/events", json={"events": edge}, headers=AS_WRITER).json()
        for _ in range(2):  # the client heard nothing the first time, and retries
            assert api.post("/events", json={"events": RETRIED}, headers=AS_WRITER).json()["accepted"] == 5
    shop = tmp / "shop"
    shop.mkdir()
    with open(shop / "interactions.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, COLUMNS)
        writer.writeheader()
        writer.writerows(_edge_values(n, "file") for n in range(len(EDGE_CASES)))
    with Warehouse(home=str(home)).connect() as con:
        load_generic(con, shop)
    ingest_landing(home)
    return home, answer, now


def _query(home: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_retried_post_is_on_disk_twice_and_in_the_marts_once(built):
    home, _, _ = built
    landing = recsys_paths(str(home)).landing_dir
    assert not [p for p in landing.iterdir() if p.name.startswith(OPEN_PREFIX)]  # sealed when the app stopped
    (folder,) = [p for p in landing.iterdir() if p.name.startswith(SEALED_PREFIX)]
    lines = (folder / FILE_NAME).read_text().splitlines()
    retried = [line for line in lines if line.startswith("retry-")]
    assert len(retried) == 10 and retried[:5] == retried[5:]
    rows = _query(home, "select event_id, item_id, occurred_at from marts.fct_interactions "
                        "where event_id like 'retry-%' order by event_id")
    assert rows == [(f"retry-{n}", f"r{n}", datetime(2024, 5, 2, 10, 0, n)) for n in range(5)]
    assert _query(home, "select count(*), count(distinct event_id) from marts.fct_interactions "
                        "where event_id is not null") == [(2 * KEPT + 5,) * 2]
    load = _query(home, f"select raw_rows, kept_rows, duplicate_rows, rejected_rows, is_balanced "
                        f"from marts.reconciliation where source_file like '%{folder.name}%'")
    assert load == [(len(lines) - 1, len(lines) - 1 - 5, 5, 0, True)]
    assert _query(home, "select bool_and(is_balanced) from marts.reconciliation") == [(True,)]


def test_the_api_and_dbt_give_each_edge_case_the_same_verdict(built):
    home, answer, now = built
    rules = EventRules.from_project()
    dbt = {event_id: reason or status for event_id, status, reason in _query(
        home, "select event_id, row_status, rejection_reason from intermediate.int_interactions__classified "
              "where event_id like 'file-%'")}
    expected = {f"file-{n:02d}": verdict for n, (_, verdict) in enumerate(EDGE_CASES)}
    assert dbt == expected
    python = {}
    for number in range(len(EDGE_CASES)):
        verdict = check_event(_edge_values(number, "file"), rules, now)
        python[f"file-{number:02d}"] = verdict.code if isinstance(verdict, Rejection) else "kept"
    assert python == expected
    rejected = [(n, FIELD_OF[verdict]) for n, (_, verdict) in enumerate(EDGE_CASES) if verdict != "kept"]
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == rejected
    assert answer["accepted"] == len(EDGE_CASES) - len(rejected) == KEPT


def test_an_event_sent_through_the_api_reads_in_the_marts_as_the_shops_file_does(built):
    home, _, _ = built
    values = "item_id, event_type, occurred_at, quantity, unit_price, basket_id, user_id, is_anonymous"
    rows = _query(home, f"select event_id, {values} from marts.fct_interactions where event_id similar to "
                        "'(api|file)-[0-9]+' order by event_id")
    by_source = {source: {event_id[-2:]: tuple(row) for event_id, *row in rows if event_id.startswith(source)}
                 for source in ("api", "file")}
    assert len(by_source["file"]) == KEPT and by_source["api"] == by_source["file"]
    assert by_source["file"]["17"][:1] == ("85123A",)  # " 85123A.0 ": the catalogue's id
    assert by_source["file"]["15"][-2:] == (pseudonymize("17850", DEV_PSEUDONYMIZATION_KEY), False)
    assert by_source["file"]["13"][-1] is True  # a session only: an anonymous visitor


def test_the_events_frame_times_match_the_warehouse(built):
    """The service is told occurred_at as naive UTC, the warehouse's clock: the same instant for the same event."""
    home, _, now = built
    rules = EventRules.from_project()
    (occurred_at,) = _query(home, "select occurred_at from marts.fct_interactions where event_id = 'file-03'")[0]
    assert check_event(_edge_values(3, "file"), rules, now).occurred_at == occurred_at
    assert occurred_at == datetime(2024, 5, 1, 14, 0, 0, 123456)
