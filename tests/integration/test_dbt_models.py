"""dbt build on a hand-made raw schema: every reason code, duplicates within and across loads, cancellations,
description variants, a generic source with a catalogue. Expected numbers are computed by hand below.

One ``dbt build`` (models, data tests and unit tests) runs per module; the tests then read the marts.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from orchestration.store.marts import read_interactions
from orchestration.store.privacy import pseudonymize, pseudonymize_session

TRANSFORMS_DIR = Path(__file__).resolve().parents[2] / "transforms"
KEY = "integration-test-key"

RAW_SCHEMA = """
create schema raw;
create table raw.loads (load_id varchar, source_kind varchar, target_table varchar, source_file varchar,
    content_sha256 varchar, row_count bigint, loaded_at timestamp, load_seq bigint);
create table raw.order_lines (load_id varchar, source_file varchar, source_row bigint, sheet varchar,
    invoice varchar, stock_code varchar, description varchar, quantity varchar, invoice_date varchar,
    unit_price varchar, customer_id varchar, country varchar, malformed_line varchar);
create table raw.interactions (load_id varchar, source_file varchar, source_row bigint,
    user_id varchar, item_id varchar, "timestamp" varchar, event_type varchar, quantity varchar,
    price varchar, session_id varchar, malformed_line varchar, event_id varchar);
create table raw.items (load_id varchar, source_file varchar, source_row bigint, item_id varchar,
    title varchar, description varchar, category varchar, brand varchar, price varchar,
    malformed_line varchar);
"""

HEART = "WHITE HANGING HEART T-LIGHT HOLDER"
HEART_MESSY = "  WHITE  HANGING HEART\tT-LIGHT HOLDER "  # the same description once cleaned
WARMER = "HAND WARMER UNION JACK"
UK, FR, DE = "United Kingdom", "France", "Germany"
ANNA, BEN, CLEO = "17850.0", "13047.0", "12583.0"  # customer ids as pandas renders them
T0, T1, T2 = "2010-12-01 08:26:00", "2010-12-01 09:30:00", "2010-12-01 10:00:00"

# ((source_row, invoice, stock_code, description, quantity, invoice_date, unit_price, customer_id, country),
#  expected fate: kept, duplicate or the quarantine reason)
ORDER_LINES_1 = [
    ((1, "536365", "85123A", HEART, "6", T0, "2.55", ANNA, UK), "kept"),
    ((2, "536365", "71053", "WHITE METAL LANTERN", "6", T0, "3.39", ANNA, UK), "reversed_by_cancellation"),
    ((3, "536365", "85123A", HEART, "6", T0, "2.55", ANNA, UK), "duplicate"),
    ((4, "536366", "85123a", HEART_MESSY, "2", "12/1/2010 8:28", "2.55", "17850", UK), "kept"),
    ((5, "536367", "85123A", HEART.lower(), "3", "2010-12-01 09:00:00", "2.55", BEN, UK), "kept"),
    ((6, "536368", "22633", WARMER, "6", T1, "1.85", None, UK), "missing_user"),
    ((7, "536369", "POST", "POSTAGE", "1", T1, "18.0", CLEO, FR), "non_product"),
    ((8, "536370", None, "nan", "1", T1, "1.0", CLEO, FR), "missing_item"),
    ((9, "536371", "22633", WARMER, "1", "yesterday", "1.85", CLEO, FR), "unparseable_timestamp"),
    ((10, "C536372", "71053", "WHITE METAL LANTERN", "-6", T2, "3.39", ANNA, UK), "cancellation"),
    ((11, "C536373", "22633", WARMER, "-2", T2, "1.85", BEN, UK), "unmatched_cancellation"),
    ((12, "536374", "22633", WARMER, "1", "1985-01-01 00:00:00", "1.85", BEN, UK), "timestamp_out_of_range"),
    ((13, "536375", "22633", WARMER, "six", T2, "1.85", BEN, UK), "unparseable_quantity"),
    ((14, "536376", "22633", WARMER, "1", T2, "n/a", BEN, UK), "unparseable_price"),
    ((15, "536377", "22633", WARMER, "0", T2, "1.85", BEN, UK), "non_positive_quantity"),
    ((16, "536378", "22633", WARMER, "1", T2, "0.0", BEN, UK), "non_positive_price"),
    ((17, None, None, None, None, None, None, None, None), "malformed_line"),
    ((18, "536380", "gift_0001_20", "Dotcomgiftshop Gift Voucher £20.00", "1", T2, "16.67", BEN, UK),
     "non_product"),
    ((19, "536381", "22633", WARMER, "12", "2010-12-02 08:00:00", "1.85", BEN, DE), "kept"),
    ((20, "536382", "22633", f"{WARMER} ", "12.0", "2010-12-02T09:00:00", "1.85", "13047", DE), "kept"),
]
# A re-export overlapping the first file, loaded later: copies are duplicates even with "13047" for "13047.0".
ORDER_LINES_2 = [
    ((1, "536365", "85123A", HEART, "6", T0, "2.55", ANNA, UK), "duplicate"),
    ((2, "536367", "85123A", f"{HEART.lower()} ", "3", "2010-12-01 09:00:00", "2.55", "13047", UK),
     "duplicate"),
    ((3, "536390", "85123A", HEART, "1", "2010-12-03 08:00:00", "2.95", CLEO, FR), "kept"),
]
# (source_row, user_id, item_id, timestamp, event_type, quantity, price, session_id), reason
INTERACTIONS = [
    ((1, "u1", "SKU-1", "2020-01-01T10:00:00Z", "view", None, "0", "s1"), "kept"),
    ((2, "u1", "SKU-1", "1577873000", "Cart", "1", "9.99", "s1"), "kept"),
    ((3, "u1", "SKU-1", "1577873000", "Cart", "1", "9.99", "s1"), "duplicate"),
    ((4, "u2", "SKU-2", "2020-01-02 12:00", "purchase", "2", "5", "s2"), "kept"),
    ((5, "u2", "SKU-404", "2020-01-02 12:00", "view", None, None, "s2"), "unknown_item"),
    ((6, None, "SKU-1", "2020-01-02 12:00", "view", None, None, None), "missing_user"),  # no session either
    ((7, "u3", " ", "2020-01-02 12:00", "view", None, None, None), "missing_item"),
    ((8, "u3", "SKU-1", "not a time", "view", None, None, None), "unparseable_timestamp"),
    ((9, "u3", "SKU-1", "2999-01-01 00:00:00", "view", None, None, None), "timestamp_out_of_range"),
    ((10, "u3", "SKU-1", "2020-01-02 12:00", "view", "many", None, None), "unparseable_quantity"),
    ((11, "u3", "SKU-1", "2020-01-02 12:00", "view", None, "free", None), "unparseable_price"),
    ((12, "u3", "SKU-1", "2020-01-02 12:00", "rate", None, None, None), "unknown_event_type"),
    ((13, "u3", "SKU-1", "2020-01-02 12:00", "purchase", "-1", "5", None), "non_positive_quantity"),
    ((14, "u3", "SKU-1", "2020-01-02 12:00", "purchase", "1", "-5", None), "non_positive_price"),
    ((15, None, None, None, None, None, None, None), "malformed_line"),
    ((16, " 42.0 ", "SKU-3", "2020-01-03 00:00:00", None, None, None, None), "kept"),
    # u1 views SKU-1 again 20 s after row 1 (a shop's own name for a view): kept, merged into row 1's view.
    ((17, "u1", "SKU-1", "2020-01-01T10:00:20Z", "click", None, None, "s1"), "collapsed"),
    # ... and 4 min 40 s after that: a new view.
    ((18, "u1", "SKU-1", "2020-01-01T10:05:00Z", " PV ", None, None, "s1"), "kept"),
    # Anonymous visitors: no customer id (empty, or pandas' "nan"), a session id. Session web-7 views SKU-1 twice
    # within 30 s (one view) and buys SKU-2; session web-8 views SKU-1 between them (its own view, not merged).
    ((19, None, "SKU-1", "2020-01-04 09:00:00", "view", None, None, "web-7"), "kept"),
    ((20, "nan", "SKU-1", "2020-01-04 09:00:05", "view", None, None, " web-8 "), "kept"),
    ((21, "", "SKU-1", "2020-01-04 09:00:10", "view", None, None, "web-7"), "collapsed"),
    ((22, None, "SKU-2", "2020-01-04 09:05:00", "purchase", "1", "5", "web-7"), "kept"),
]
# (source_row, item_id, title, description, category, brand, price), reason
ITEMS_1 = [
    ((1, "SKU-1", "Blue Mug", "A blue mug", "Kitchen", "Acme", "9.99"), "kept"),
    ((2, "SKU-2", None, None, None, None, None), "kept"),
    ((3, "SKU-3", "Old Title", None, "Kitchen", None, "3.00"), "superseded_item_version"),
    ((4, None, None, None, None, None, None), "malformed_line"),
    ((5, None, "Orphan", None, None, None, None), "missing_item"),
]
ITEMS_2 = [
    ((1, "SKU-3", "New Title", "Now with a lid", "Kitchen", None, "3.50"), "kept"),
    ((2, "SKU-1", "Blue Mug", "A blue mug", "Kitchen", "Acme", "9.99"), "duplicate"),
]
LOADS = [  # load_id, source_kind, target_table, rows, load_seq
    ("ol1", "online_retail", "order_lines", ORDER_LINES_1, 1),
    ("ol2", "online_retail", "order_lines", ORDER_LINES_2, 2),
    ("it1", "generic", "interactions", INTERACTIONS, 3),
    ("im1", "generic", "items", ITEMS_1, 4),
    ("im2", "generic", "items", ITEMS_2, 5),
]


def _python_pseudonym(raw_id: str) -> str:
    """The pseudonymisation rule written out with hashlib: 'u_' + sha256(key|normalised id)[:16]."""
    normalized = re.sub(r"\.0+$", "", raw_id.strip())
    return "u_" + hashlib.sha256(f"{KEY}|{normalized}".encode()).hexdigest()[:16]


def _python_session_pseudonym(session_id: str) -> str:
    """An anonymous visitor's key written out with hashlib: 's_' + sha256(key|session:trimmed id)[:16]."""
    return "s_" + hashlib.sha256(f"{KEY}|session:{session_id.strip()}".encode()).hexdigest()[:16]


def _write_raw(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(RAW_SCHEMA)
    for load_id, kind, table, rows, seq in LOADS:
        source_file = f"/data/{load_id}.csv"
        con.execute(
            "insert into raw.loads values (?, ?, ?, ?, ?, ?, timestamp '2024-01-01 00:00:00', ?)",
            [load_id, kind, table, source_file, load_id * 8, len(rows), seq],
        )
        for values, reason in rows:
            malformed = "broken,\"line" if reason == "malformed_line" else None
            if table == "order_lines":
                con.execute(
                    "insert into raw.order_lines values (?, ?, ?, null, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [load_id, source_file, *values, malformed],
                )
            else:
                # These rows carry no event_id (value-based deduplication); the column is NULL.
                placeholders = ", ".join("?" * (len(values) + 3))
                con.execute(
                    f"insert into raw.{table} values ({placeholders}"
                    + (", null)" if table == "interactions" else ")"),
                    [load_id, source_file, *values, malformed],
                )
    con.close()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Iterator[duckdb.DuckDBPyConnection]:
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    tmp = tmp_path_factory.mktemp("dbt")
    path = tmp / "warehouse.duckdb"
    _write_raw(path)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("RECSYS_WAREHOUSE", str(path))
    try:
        result = dbtRunner().invoke(
            [
                "build",
                "--project-dir", str(TRANSFORMS_DIR),
                "--profiles-dir", str(TRANSFORMS_DIR),
                "--target-path", str(tmp / "target"),
                "--log-path", str(tmp / "logs"),
                "--vars", json.dumps({"pseudonymization_key": KEY}),
                "--quiet",
            ]
        )
    finally:
        monkeypatch.undo()
    failures = [
        f"{r.node.name}: {r.status} {r.message}"
        for r in (result.result.results if result.result is not None else [])
        if str(r.status) not in ("success", "pass")
    ]
    assert result.success and not failures, result.exception or "\n".join(failures)
    # dbt-duckdb keeps its connection to the file open for the life of the process; release it so that this
    # and later tests may open the file with their own settings.
    DuckDBConnectionManager.close_all_connections()
    gc.collect()
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


def _expected(status_of: str) -> dict[tuple[str, str, int], str]:
    """(source_table, load_id, source_row) -> reason for the rows whose expected fate is ``status_of``."""
    out = {}
    for load_id, _, table, rows, _ in LOADS:
        for values, reason in rows:
            fate = reason if reason in ("kept", "duplicate", "collapsed") else "rejected"
            if fate == status_of:
                out[(table, load_id, values[0])] = reason
    return out


def test_quarantine_holds_each_rejected_row_with_its_reason(warehouse):
    rows = warehouse.execute(
        "select source_table, load_id, source_row, reason from marts.quarantine"
    ).fetchall()
    assert {(t, load, row): reason for t, load, row, reason in rows} == _expected("rejected")
    assert len(rows) == len(_expected("rejected"))


def test_quarantine_keeps_the_raw_text(warehouse):
    raw = warehouse.execute(
        "select raw_values, source_file from marts.quarantine where load_id = 'ol1' and source_row = 13"
    ).fetchone()
    assert json.loads(raw[0])["quantity"] == "six"
    assert json.loads(raw[0])["customer_id"] == "13047.0"
    assert raw[1] == "/data/ol1.csv"
    malformed = warehouse.execute(
        "select raw_values from marts.quarantine where load_id = 'ol1' and source_row = 17"
    ).fetchone()[0]
    assert json.loads(malformed)["malformed_line"] == 'broken,"line'


def test_clean_events_are_exactly_the_kept_rows(warehouse):
    rows = warehouse.execute(
        "select source_table, load_id, source_row from marts.fct_interactions"
    ).fetchall()
    assert set(rows) == set(_expected("kept")) - {k for k in _expected("kept") if k[0] == "items"}
    assert len(rows) == 14


def test_reconciliation_balances_every_load(warehouse):
    rows = warehouse.execute(
        """select load_id, raw_rows, declared_rows, kept_rows, duplicate_rows, rejected_rows, is_balanced,
                  rejected_by_reason
           from marts.reconciliation order by load_seq"""
    ).fetchall()
    assert [r[:7] for r in rows] == [
        ("ol1", 20, 20, 5, 1, 14, True),
        ("ol2", 3, 3, 1, 2, 0, True),
        ("it1", 22, 22, 10, 1, 11, True),
        ("im1", 5, 5, 2, 0, 3, True),
        ("im2", 2, 2, 1, 1, 0, True),
    ]
    collapsed = dict(warehouse.execute("select load_id, collapsed_rows from marts.reconciliation").fetchall())
    assert collapsed == {"ol1": 0, "ol2": 0, "it1": 2, "im1": 0, "im2": 0}
    by_reason = json.loads(rows[0][7])
    assert by_reason["non_product"] == 2 and by_reason["cancellation"] == 1 and sum(by_reason.values()) == 14
    assert rows[1][7] == "{}"


def test_cancellation_pairs_with_the_purchase_it_reverses(warehouse):
    pair = warehouse.execute(
        """select cancellation_matched_load_id, cancellation_matched_source_row
           from intermediate.int_order_lines__classified where load_id = 'ol1' and source_row = 10"""
    ).fetchone()
    assert pair == ("ol1", 2)
    lanterns = warehouse.execute("select count(*) from marts.fct_interactions where item_id = '71053'")
    assert lanterns.fetchone() == (0,)


def test_dim_items_titles_and_text(warehouse):
    rows = warehouse.execute(
        "select item_id, title, description, n_description_variants, has_text, price from marts.dim_items"
    ).fetchall()
    items = {r[0]: r[1:] for r in rows}
    assert set(items) == {"85123A", "22633", "SKU-1", "SKU-2", "SKU-3"}
    # Three kept lines say HEART (one after whitespace cleaning), one says it in lower case.
    assert items["85123A"] == (HEART, None, 2, True, 2.55)
    assert items["22633"] == (WARMER, None, 1, True, 1.85)
    assert items["SKU-1"] == ("Blue Mug", "A blue mug", 0, True, 9.99)
    # A text-less catalogue item is kept; its price falls back to the median kept unit price.
    assert items["SKU-2"] == (None, None, 0, False, 5.0)
    assert items["SKU-3"] == ("New Title", "Now with a lid", 0, True, 3.5)


def test_dim_users_are_pseudonymised_like_python(warehouse):
    rows = warehouse.execute(
        "select user_id, n_events, n_baskets, country from marts.dim_users where not is_anonymous").fetchall()
    users = {r[0]: r[1:] for r in rows}
    assert users == {
        _python_pseudonym("17850.0"): (2, 2, UK),
        _python_pseudonym("13047.0"): (3, 3, "Germany"),
        _python_pseudonym("12583.0"): (1, 1, "France"),
        _python_pseudonym("u1"): (3, 1, None),
        _python_pseudonym("u2"): (1, 1, None),
        _python_pseudonym(" 42.0 "): (1, 0, None),
    }
    assert _python_pseudonym(" 42.0 ") == "u_" + hashlib.sha256(f"{KEY}|42".encode()).hexdigest()[:16]
    # The Python side that serving and the CLI use agrees with the dbt macro.
    for raw_id in ("17850.0", "13047.0", "12583.0", "u1", "u2", " 42.0 "):
        assert pseudonymize(raw_id, KEY) == _python_pseudonym(raw_id)


def test_generic_events_are_typed_and_defaulted(warehouse):
    rows = warehouse.execute(
        """select source_row, event_type, occurred_at::varchar, quantity, unit_price, basket_id
           from marts.fct_interactions where source_table = 'interactions' order by source_row"""
    ).fetchall()
    assert rows == [
        (1, "view", "2020-01-01 10:00:00", 2, 0.0, "s1"),  # row 17's view counted in
        (2, "cart", "2020-01-01 10:03:20", 1, 9.99, "s1"),
        (4, "purchase", "2020-01-02 12:00:00", 2, 5.0, "s2"),
        (16, "purchase", "2020-01-03 00:00:00", 1, None, None),
        (18, "view", "2020-01-01 10:05:00", 1, None, "s1"),
        (19, "view", "2020-01-04 09:00:00", 2, None, "web-7"),  # row 21's view counted in
        (20, "view", "2020-01-04 09:00:05", 1, None, "web-8"),
        (22, "purchase", "2020-01-04 09:05:00", 1, 5.0, "web-7"),
    ]


def test_an_anonymous_session_is_its_own_user_and_never_a_customer(warehouse):
    sessions = warehouse.execute(
        "select user_id, n_events, n_baskets from marts.dim_users where is_anonymous order by n_events").fetchall()
    web7, web8 = _python_session_pseudonym("web-7"), _python_session_pseudonym("web-8")
    assert sessions == [(web8, 1, 1), (web7, 2, 1)]
    # The Python side agrees with the dbt macro, and no session key can be a customer's.
    assert (pseudonymize_session("web-7", KEY), pseudonymize_session(" web-8 ", KEY)) == (web7, web8)
    assert not {web7, web8} & {u for (u,) in warehouse.execute("select user_id from marts.dim_users "
                                                               "where not is_anonymous").fetchall()}
    anonymous = warehouse.execute(
        "select source_row from marts.fct_interactions where is_anonymous order by source_row").fetchall()
    assert anonymous == [(19,), (20,), (22,)]
    # The sequential models' purchases leave the session out; every behaviour read keeps it.
    purchases = read_interactions(warehouse, purchases_of_known_customers=True)
    assert set(purchases["event_type"]) == {"purchase"} and not purchases["user_id"].isin([web7, web8]).any()
    assert len(purchases) == len(warehouse.execute(
        "select 1 from marts.fct_interactions where event_type = 'purchase' and not is_anonymous").fetchall()) == 8
    everything = read_interactions(warehouse)
    assert set(everything.loc[everything["user_id"].isin([web7, web8]), "source_row"]) == {19, 20, 22}
