"""Automation: the sensors' pure decisions against hand-computed values, then the sensors themselves against a
temporary RECSYS_HOME (a small DuckDB warehouse, a landing folder, a SQLite MLflow registry)."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.defs.automation import (
    DATA_JOB,
    RECOMMENDATIONS_JOB,
    RETRAIN_JOB,
    automation_schedules,
    automation_sensors,
    champion_sensor,
    daily_data_schedule,
    landing_sensor,
    retrain_sensor,
    weekly_retrain_schedule,
)
from orchestration.defs.resources import MLflowResource, WarehouseResource
from orchestration.ingest.landing import LandingFile, landing_kind, new_landing_files
from orchestration.registry.promotion import BUNDLE_MODEL, promote, rollback
from orchestration.registry.retraining import (
    RetrainSettings,
    champion_moved,
    popularity_drift,
    retrain_decision,
    retrain_inputs,
)
from orchestration.store.paths import recsys_paths
from recmodels.sequences import SequenceConfig
from recmodels.splits import StoredSplit, save_split, temporal_split

NOW = 1_700_000_000.0  # a fixed "now" for the pure landing decisions
SETTLE = 60.0


# ---- new_landing_files


def test_first_run_takes_every_settled_file_oldest_first_then_by_name():
    listing = [("b.csv", 10, 100.0), ("a.csv", 20, 100.0), ("z.csv", 5, 50.0)]
    scan = new_landing_files(listing, None, NOW, SETTLE)
    assert [f.name for f in scan.new_files] == ["z.csv", "a.csv", "b.csv"]
    assert scan.new_files[0] == LandingFile("z.csv", 5, 50.0)
    assert json.loads(scan.cursor) == {"a.csv": [20, 100.0], "b.csv": [10, 100.0], "z.csv": [5, 50.0]}
    assert scan.waiting == () and scan.ignored == ()
    assert scan.reason.startswith("3 new or changed: z.csv, a.csv, b.csv")


def test_the_returned_cursor_makes_a_second_look_find_nothing():
    listing = [("a.csv", 20, 100.0), ("b.csv", 10, 100.0)]
    first = new_landing_files(listing, None, NOW, SETTLE)
    second = new_landing_files(listing, first.cursor, NOW + 30, SETTLE)
    assert second.new_files == ()
    assert second.cursor == first.cursor
    assert second.reason == "Nothing new to ingest."


def test_a_file_whose_size_or_mtime_changed_is_new_again():
    cursor = new_landing_files([("a.csv", 20, 100.0), ("b.csv", 10, 100.0)], None, NOW).cursor
    scan = new_landing_files([("a.csv", 21, 100.0), ("b.csv", 10, 101.0)], cursor, NOW)
    assert [f.name for f in scan.new_files] == ["a.csv", "b.csv"]
    assert json.loads(scan.cursor) == {"a.csv": [21, 100.0], "b.csv": [10, 101.0]}


@pytest.mark.parametrize(
    "name",
    [".hidden.csv", "~$orders.xlsx", "~backup.csv", "a.csv.tmp", "b.csv.part", "c.PARTIAL", "d.crdownload"],
)
def test_hidden_temporary_and_partial_names_are_ignored_and_never_remembered(name):
    scan = new_landing_files([(name, 10, 0.0)], None, NOW)
    assert scan.new_files == () and scan.ignored == (name,)
    assert scan.cursor == "{}"


def test_settle_time_boundary_counts_as_settled():
    at_boundary = ("old-enough.csv", 1, NOW - SETTLE)
    just_inside = ("too-fresh.csv", 1, NOW - SETTLE + 0.001)
    scan = new_landing_files([at_boundary, just_inside], None, NOW, SETTLE)
    assert [f.name for f in scan.new_files] == ["old-enough.csv"]
    assert scan.waiting == ("too-fresh.csv",)
    assert "too-fresh.csv" not in json.loads(scan.cursor)  # so a later look still finds it
    later = new_landing_files([at_boundary, just_inside], scan.cursor, NOW + 1, SETTLE)
    assert [f.name for f in later.new_files] == ["too-fresh.csv"]


@pytest.mark.parametrize("size, mtime", [(0, 0.0), (10, math.nan)])
def test_empty_files_and_unreadable_times_wait(size, mtime):
    scan = new_landing_files([("a.csv", size, mtime)], None, NOW, SETTLE)
    assert scan.new_files == () and scan.waiting == ("a.csv",)
    assert scan.cursor == "{}"
    assert "still being written" in scan.reason


def test_a_seen_file_being_rewritten_keeps_its_old_state_until_it_settles():
    cursor = new_landing_files([("a.csv", 20, 100.0)], None, NOW).cursor
    rewriting = new_landing_files([("a.csv", 5, NOW - 1)], cursor, NOW, SETTLE)
    assert rewriting.new_files == () and rewriting.waiting == ("a.csv",)
    assert rewriting.cursor == cursor
    settled = new_landing_files([("a.csv", 40, NOW - 1)], rewriting.cursor, NOW + SETTLE, SETTLE)
    assert [(f.name, f.size) for f in settled.new_files] == [("a.csv", 40)]


def test_removed_files_are_forgotten():
    cursor = new_landing_files([("a.csv", 20, 100.0), ("b.csv", 10, 100.0)], None, NOW).cursor
    assert json.loads(new_landing_files([("b.csv", 10, 100.0)], cursor, NOW).cursor) == {"b.csv": [10, 100.0]}


def test_empty_folder_and_empty_cursor_string():
    scan = new_landing_files([], "", NOW)
    assert scan.new_files == () and scan.cursor == "{}" and scan.reason == "Nothing new to ingest."


@pytest.mark.parametrize("cursor", ["not json", "[1, 2]", '{"a.csv": 3}'])
def test_an_unreadable_cursor_counts_as_empty_and_says_so(cursor):
    scan = new_landing_files([("a.csv", 20, 100.0)], cursor, NOW)
    assert [f.name for f in scan.new_files] == ["a.csv"]
    assert "cursor was unreadable" in scan.reason


@pytest.mark.parametrize("now, settle", [(math.nan, 60.0), (NOW, -1.0), (NOW, math.inf)])
def test_bad_times_are_errors(now, settle):
    with pytest.raises(ValueError):
        new_landing_files([], None, now, settle)


# ---- landing_kind


@pytest.mark.parametrize("name", ["orders.csv", "Orders.CSV.GZ", "book.xlsx", "lines.parquet"])
def test_a_supported_file_is_an_online_retail_export(name):
    assert landing_kind(name) == "online_retail"
    assert landing_kind(name, setting="online_retail") == "online_retail"


def test_a_file_is_never_generic_and_other_files_are_not_ingested():
    assert landing_kind("orders.csv", setting="generic") is None
    assert landing_kind("notes.txt") is None


def test_a_folder_with_an_interactions_file_is_generic_else_online_retail():
    assert landing_kind("shop", ["interactions.csv", "items.parquet"]) == "generic"
    assert landing_kind("shop", ["Interactions.CSV.GZ"]) == "generic"
    assert landing_kind("exports", ["2010.csv", "2011.xlsx", "README.txt"]) == "online_retail"
    assert landing_kind("exports", ["2010.csv"], setting="generic") == "generic"
    assert landing_kind("shop", ["interactions.csv"], setting="online_retail") == "online_retail"


def test_a_folder_without_readable_files_is_not_ingested():
    assert landing_kind("empty", []) is None
    assert landing_kind("junk", ["notes.txt", ".DS_Store", "~$book.xlsx"]) is None


def test_an_unknown_landing_setting_is_an_error():
    with pytest.raises(ValueError, match="synthetic"):
        landing_kind("orders.csv", setting="synthetic")


# ---- popularity_drift


def test_identical_and_proportional_popularity_has_no_drift():
    assert popularity_drift({"a": 3, "b": 1}, {"a": 3, "b": 1}) == 0.0
    assert popularity_drift({"a": 3, "b": 1}, {"a": 6, "b": 2}) == 0.0


def test_disjoint_popularity_drifts_fully():
    assert popularity_drift({"a": 3, "b": 1}, {"c": 1}) == 1.0


def test_drift_is_half_the_l1_distance_with_missing_items_at_zero():
    # p = (a .75, b .25, c 0), q = (a .25, b .25, c .5): TV = (.5 + 0 + .5) / 2.
    assert popularity_drift({"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 2}) == 0.5
    assert popularity_drift({"a": 1, "b": 1, "c": 2}, {"a": 3, "b": 1}) == 0.5  # symmetric


def test_top_k_compares_the_head_and_pools_the_tail():
    train, recent = {"a": 5, "b": 3, "c": 1, "d": 1}, {"a": 2, "c": 1, "d": 1}
    # All items: p = (.5, .3, .1, .1), q = (.5, 0, .25, .25), TV = (0 + .3 + .15 + .15) / 2.
    assert popularity_drift(train, recent) == pytest.approx(0.3)
    # Head {a}: p = (a .5, rest .5), q = (a .5, rest .5).
    assert popularity_drift(train, recent, top_k=1) == 0.0


def test_top_k_ties_are_broken_by_id_whatever_the_order():
    # Head {a}: p = (a 1/3, rest 2/3), q = (a 1, rest 0) -> 2/3; a head {c} would give 1/3.
    assert popularity_drift({"c": 1, "b": 1, "a": 1}, {"a": 1}, top_k=1) == 2 / 3
    assert popularity_drift({"a": 1, "b": 1, "c": 1}, {"a": 1}, top_k=1) == 2 / 3


@pytest.mark.parametrize("train, recent", [({}, {"a": 1}), ({"a": 1}, {}), ({}, {}), ({"a": 0}, {"a": 2})])
def test_drift_is_nan_when_a_side_has_no_purchase(train, recent):
    assert math.isnan(popularity_drift(train, recent))


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf])
def test_bad_counts_are_errors(bad):
    with pytest.raises(ValueError):
        popularity_drift({"a": 1, "b": bad}, {"a": 1})
    with pytest.raises(ValueError):
        popularity_drift({"a": 1}, {"a": 1}, top_k=0)


# ---- retrain_decision


def test_no_training_yet_retrains_when_any_data_exists():
    decision = retrain_decision(new_rows=5, trained_rows=None)
    assert decision.retrain and decision.new_share is None
    assert "No model trained yet" in decision.reason
    assert retrain_decision(new_rows=5, trained_rows=0).retrain  # an empty training counts as none


def test_no_training_and_no_data_does_not_retrain():
    decision = retrain_decision(new_rows=0, trained_rows=None)
    assert not decision.retrain and "no clean purchase" in decision.reason


def test_new_share_exactly_at_the_threshold_does_not_retrain():
    at = retrain_decision(new_rows=10, trained_rows=100, min_new_share=0.1)
    assert not at.retrain and at.new_share == 0.1
    assert at.reason.startswith("No retrain: 10 new purchases are 10.0% of the 100 trained on (not above")
    above = retrain_decision(new_rows=11, trained_rows=100, min_new_share=0.1)
    assert above.retrain and above.reason.startswith("Retrain: ")


def test_a_zero_threshold_still_needs_new_rows():
    assert not retrain_decision(new_rows=0, trained_rows=100, min_new_share=0.0).retrain
    assert retrain_decision(new_rows=1, trained_rows=100, min_new_share=0.0).retrain


def test_drift_exactly_at_the_threshold_does_not_retrain_and_above_does():
    at = retrain_decision(new_rows=0, trained_rows=100, drift=0.2, max_drift=0.2)
    assert not at.retrain and "popularity drift 0.200 (not above the 0.200 threshold)" in at.reason
    above = retrain_decision(new_rows=0, trained_rows=100, drift=0.25, max_drift=0.2)
    assert above.retrain and above.drift == 0.25 and "(above the 0.200 threshold)" in above.reason


def test_unmeasured_drift_never_triggers():
    decision = retrain_decision(new_rows=1, trained_rows=100, drift=math.nan, max_drift=0.0)
    assert not decision.retrain and "drift not measured" in decision.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"new_rows": -1, "trained_rows": 10},
        {"new_rows": 1, "trained_rows": -10},
        {"new_rows": 1, "trained_rows": 10, "min_new_share": math.nan},
        {"new_rows": 1, "trained_rows": 10, "max_drift": -0.1},
        {"new_rows": 1, "trained_rows": 10, "drift": 1.5},
    ],
)
def test_bad_retrain_inputs_are_errors(kwargs):
    with pytest.raises(ValueError):
        retrain_decision(**kwargs)


def test_decisions_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        retrain_decision(1, None).retrain = False  # type: ignore[misc]


# ---- champion_moved


@pytest.mark.parametrize(
    "previous, current, moved, cursor, says",
    [
        (None, None, False, "", "No champion yet."),
        ("", None, False, "", "No champion yet."),
        (None, 3, True, "3", "Champion version 3 is new to this sensor."),
        ("3", 3, False, "3", "The champion is still version 3."),
        ("3", 4, True, "4", "The champion moved from version 3 to 4."),
        ("4", 3, True, "3", "The champion moved from version 4 to 3."),  # a rollback is a move
        ("3", None, False, "", "The champion alias (was version 3) is gone; "
                               "the current recommendations stay."),
    ],
)
def test_champion_moved_table(previous, current, moved, cursor, says):
    decision = champion_moved(previous, current)
    assert (decision.moved, decision.cursor, decision.reason) == (moved, cursor, says)


# ---- landing_sensor


def _age(path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def _write(path, text: str, age_seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    _age(path, age_seconds)


def _evaluate(sensor, home, cursor=None, resource_key="warehouse"):
    kind = MLflowResource if resource_key == "mlflow" else WarehouseResource
    resource = kind(home=str(home))
    with dg.build_sensor_context(cursor=cursor, resources={resource_key: resource}) as context:
        return sensor(context)


def _data_source(kind: str, path) -> dict:
    return {"resources": {"data_source": {"config": {"source": kind, "data": str(path)}}}}


@pytest.fixture
def landing(recsys_home, monkeypatch):
    for variable in ("RECSYS_LANDING_SOURCE", "RECSYS_LANDING_SETTLE_SECONDS"):
        monkeypatch.delenv(variable, raising=False)
    folder = recsys_paths(recsys_home).landing_dir
    _write(folder / "2011.csv", "InvoiceNo\n1\n", age_seconds=7200)
    _write(folder / "shop" / "interactions.csv", "user_id\n1\n", age_seconds=3600)
    _write(folder / "shop" / "items.csv", "item_id\n1\n", age_seconds=3600)
    _age(folder / "shop", 3600)  # adding files touched the folder itself
    _write(folder / "fresh.csv", "InvoiceNo\n2\n", age_seconds=0)  # still being written
    _write(folder / ".hidden.csv", "x\n", age_seconds=7200)
    _write(folder / "notes.txt", "not data\n", age_seconds=7200)
    return folder


def test_landing_sensor_requests_one_data_job_run_per_settled_entry(recsys_home, landing):
    result = _evaluate(landing_sensor, recsys_home)
    assert [r.run_config for r in result.run_requests] == [
        _data_source("online_retail", landing / "2011.csv"),
        _data_source("generic", landing / "shop"),
    ]
    first = result.run_requests[0]
    stat = (landing / "2011.csv").stat()
    assert first.run_key == f"landing:2011.csv:{stat.st_size}:{stat.st_mtime:.6f}"
    assert first.tags["recsys/trigger"] == "landing_sensor"
    assert sorted(json.loads(result.cursor)) == ["2011.csv", "shop"]

    again = _evaluate(landing_sensor, recsys_home, cursor=result.cursor)
    assert not again.run_requests
    assert again.skip_reason.skip_message.startswith("Nothing new to ingest; 1 still being written")
    assert "fresh.csv" in again.skip_reason.skip_message


def test_landing_sensor_picks_up_a_changed_file_and_a_settled_one(recsys_home, landing):
    cursor = _evaluate(landing_sensor, recsys_home).cursor
    _write(landing / "2011.csv", "InvoiceNo\n1\n3\n", age_seconds=600)
    _age(landing / "fresh.csv", 120)
    result = _evaluate(landing_sensor, recsys_home, cursor=cursor)
    assert [r.run_config["resources"]["data_source"]["config"]["data"] for r in result.run_requests] == [
        str(landing / "2011.csv"),  # older mtime first
        str(landing / "fresh.csv"),
    ]


def test_landing_sensor_kind_setting_and_settle_time_come_from_the_environment(
    recsys_home, landing, monkeypatch
):
    monkeypatch.setenv("RECSYS_LANDING_SOURCE", "online_retail")
    monkeypatch.setenv("RECSYS_LANDING_SETTLE_SECONDS", "0")
    result = _evaluate(landing_sensor, recsys_home)
    sources = {
        os.path.basename(r.run_config["resources"]["data_source"]["config"]["data"]):
        r.run_config["resources"]["data_source"]["config"]["source"]
        for r in result.run_requests
    }
    assert sources == {"2011.csv": "online_retail", "shop": "online_retail", "fresh.csv": "online_retail"}


def test_landing_sensor_holds_back_a_folder_with_a_partial_member(recsys_home, landing):
    _write(landing / "shop" / "items.csv.part", "item_id\n", age_seconds=3600)
    _age(landing / "shop", 3600)  # only the partial member holds the folder back
    result = _evaluate(landing_sensor, recsys_home)
    assert [r.run_config["resources"]["data_source"]["config"]["source"] for r in result.run_requests] == [
        "online_retail"
    ]


def test_landing_sensor_without_a_landing_folder_skips(recsys_home):
    result = _evaluate(landing_sensor, recsys_home)
    assert not result.run_requests and "No landing folder" in result.skip_reason.skip_message


# ---- retrain_sensor

DAY0 = datetime(2024, 1, 1)


def _create_interactions(path, rows) -> None:
    """A warehouse with only marts.fct_interactions; rows are (user_id, item_id, event_type, day offset); a user
    "s_..." is an anonymous visitor's session."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("create schema if not exists marts")
    con.execute(
        "create or replace table marts.fct_interactions (user_id varchar, item_id varchar, "
        "event_type varchar, occurred_at timestamp, quantity integer, unit_price double, basket_id varchar, "
        "is_anonymous boolean)"
    )
    con.executemany(
        "insert into marts.fct_interactions values (?, ?, ?, ?, 1, 1.0, ?, ?)",
        [(u, item, kind, DAY0 + timedelta(days=day), f"b{i}", u.startswith("s_"))
         for i, (u, item, kind, day) in enumerate(rows)],
    )
    con.close()


def _purchases(n: int, first_day: int, item: str = "i1", users: int = 5) -> list[tuple]:
    return [(f"u{k % users}", item, "purchase", first_day + k * 0.01) for k in range(n)]


def _save_split(home, rows, data_version: str = "v-trained") -> None:
    """The split user_sequences would store for ``rows``: what retrain_sensor compares the warehouse with."""
    events = pd.DataFrame(
        [(u, i, DAY0 + timedelta(days=d)) for u, i, kind, d in rows if kind == "purchase" and u is not None],
        columns=["user_id", "item_id", "occurred_at"],
    )
    last = events["occurred_at"].max()
    validation_cutoff, test_cutoff = last - pd.Timedelta(hours=12), last - pd.Timedelta(hours=6)
    split = temporal_split(events, SequenceConfig(), test_cutoff, validation_cutoff)
    info = {
        "data_version": data_version,
        "first_event": str(events["occurred_at"].min()),
        "last_event": str(last),
        "validation_cutoff": str(validation_cutoff),
        "test_cutoff": str(test_cutoff),
    }
    stored = StoredSplit(split, split.train_timestamps, split.train_for_test_timestamps, info)
    save_split(stored, recsys_paths(home).artifacts.split_file)


@pytest.fixture
def thresholds(monkeypatch):
    for variable in ("RECSYS_RETRAIN_MIN_NEW_SHARE", "RECSYS_RETRAIN_MAX_DRIFT"):
        monkeypatch.delenv(variable, raising=False)


def test_retrain_sensor_skips_without_a_warehouse_or_marts(recsys_home, thresholds):
    result = _evaluate(retrain_sensor, recsys_home)
    assert isinstance(result, dg.SkipReason) and "No warehouse" in result.skip_message
    duckdb.connect(str(recsys_paths(recsys_home).warehouse)).close()
    result = _evaluate(retrain_sensor, recsys_home)
    assert isinstance(result, dg.SkipReason) and "no marts.fct_interactions" in result.skip_message


def test_retrain_sensor_first_training_when_data_exists(recsys_home, thresholds):
    rows = _purchases(100, first_day=0) + [("s_guest", "i1", "purchase", 1), ("u1", "i2", "view", 1)]
    _create_interactions(recsys_paths(recsys_home).warehouse, rows)
    result = _evaluate(retrain_sensor, recsys_home)
    assert isinstance(result, dg.RunRequest)
    latest = (DAY0 + timedelta(days=0.99)).isoformat()
    assert result.run_key == f"retrain:untrained:None:100:{latest}"  # guests and views are not purchases
    assert result.tags == {"recsys/trigger": "retrain_sensor", "recsys/new_rows": "100"}


def test_retrain_sensor_counts_new_purchases_against_the_stored_split(recsys_home, thresholds, monkeypatch):
    trained = _purchases(100, first_day=0)
    _save_split(recsys_home, trained)
    warehouse = recsys_paths(recsys_home).warehouse
    _create_interactions(warehouse, trained + _purchases(10, first_day=5))
    result = _evaluate(retrain_sensor, recsys_home)
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == (
        "No retrain: 10 new purchases are 10.0% of the 100 trained on (not above the 10.0% threshold); "
        "popularity drift not measured."
    )

    monkeypatch.setenv("RECSYS_RETRAIN_MIN_NEW_SHARE", "0.05")
    result = _evaluate(retrain_sensor, recsys_home)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == f"retrain:v-trained:100:10:{(DAY0 + timedelta(days=5.09)).isoformat()}"

    monkeypatch.delenv("RECSYS_RETRAIN_MIN_NEW_SHARE")
    _create_interactions(warehouse, trained + _purchases(11, first_day=5))
    assert isinstance(_evaluate(retrain_sensor, recsys_home), dg.RunRequest)


def test_retrain_sensor_rejects_a_threshold_that_is_not_a_number(recsys_home, thresholds, monkeypatch):
    monkeypatch.setenv("RECSYS_RETRAIN_MAX_DRIFT", "lots")
    with pytest.raises(ValueError, match="RECSYS_RETRAIN_MAX_DRIFT"):
        _evaluate(retrain_sensor, recsys_home)


def test_retrain_sensor_skips_while_another_process_writes_the_warehouse(recsys_home, thresholds):
    warehouse = recsys_paths(recsys_home).warehouse
    _create_interactions(warehouse, _purchases(10, first_day=0))
    hold_lock = (
        f"import duckdb, time; c = duckdb.connect({str(warehouse)!r}); "
        "print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold_lock], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = _evaluate(retrain_sensor, recsys_home)
    finally:
        holder.kill()
        holder.wait()
    assert isinstance(result, dg.SkipReason) and "busy" in result.skip_message


def test_retrain_inputs_measure_drift_between_the_last_window_and_the_new_purchases(tmp_path):
    path = tmp_path / "w.duckdb"
    rows = (
        _purchases(4, first_day=0, item="ancient")  # before the 30-day window: not in the training side
        + _purchases(3, first_day=40, item="a") + _purchases(1, first_day=41, item="b")
        + _purchases(1, first_day=50, item="a") + _purchases(1, first_day=50, item="b")
        + _purchases(2, first_day=51, item="c")
    )
    _create_interactions(path, rows)
    last_event = DAY0 + timedelta(days=41)
    settings = RetrainSettings(drift_min_events=4, drift_top_items=10)
    with duckdb.connect(str(path), read_only=True) as con:
        inputs = retrain_inputs(con, last_event, settings)
        assert (inputs.trained_rows, inputs.new_rows) == (8, 4)
        assert inputs.latest == DAY0 + timedelta(days=51.01)
        assert inputs.drift == 0.5  # a .75 / b .25 against a .25 / b .25 / c .5
        assert math.isnan(retrain_inputs(con, last_event, RetrainSettings(drift_min_events=5)).drift)


# ---- champion_sensor


@pytest.fixture
def registry(recsys_home, monkeypatch):
    """A real SQLite MLflow registry with two versions of the bundle, none promoted yet."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MLflowResource(home=str(recsys_home)).client()
    artifacts = (recsys_home / "mlruns").as_uri()
    experiment = client.create_experiment("automation-test", artifact_location=artifacts)
    client.create_registered_model(BUNDLE_MODEL)
    for number in (1, 2):
        bundle = recsys_home / f"bundle-{number}"
        bundle.mkdir(parents=True)
        run_id = client.create_run(experiment).info.run_id
        client.create_model_version(BUNDLE_MODEL, source=bundle.as_uri(), run_id=run_id)
    return client


def test_champion_sensor_refreshes_recommendations_when_the_alias_moves(recsys_home, registry):
    nothing = _evaluate(champion_sensor, recsys_home, resource_key="mlflow")
    assert not nothing.run_requests and nothing.skip_reason.skip_message == "No champion yet."
    assert nothing.cursor == ""

    promote(registry, 1, {"ndcg@10": 0.1}, "d1")
    first = _evaluate(champion_sensor, recsys_home, cursor=nothing.cursor, resource_key="mlflow")
    assert first.cursor == "1"
    assert [r.tags for r in first.run_requests] == [
        {"recsys/trigger": "champion_sensor", "recsys/champion_version": "1"}
    ]

    same = _evaluate(champion_sensor, recsys_home, cursor=first.cursor, resource_key="mlflow")
    assert not same.run_requests and same.cursor == "1"

    promote(registry, 2, {"ndcg@10": 0.2}, "d2")
    moved = _evaluate(champion_sensor, recsys_home, cursor=same.cursor, resource_key="mlflow")
    assert moved.cursor == "2" and len(moved.run_requests) == 1

    rollback(registry)
    back = _evaluate(champion_sensor, recsys_home, cursor=moved.cursor, resource_key="mlflow")
    assert back.cursor == "1" and len(back.run_requests) == 1
    assert back.run_requests[0].run_key is None  # versions repeat after a rollback; the cursor dedupes


# ---- definitions


def test_schedules_run_in_utc_on_the_named_jobs_and_start_stopped():
    assert (daily_data_schedule.cron_schedule, daily_data_schedule.job_name) == ("0 2 * * *", DATA_JOB)
    weekly = (weekly_retrain_schedule.cron_schedule, weekly_retrain_schedule.job_name)
    assert weekly == ("0 4 * * 1", RETRAIN_JOB)
    for schedule in automation_schedules:
        assert schedule.execution_timezone == "UTC"
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    for sensor in automation_sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_automation_loads_beside_jobs_of_those_names():
    @dg.op
    def step() -> None:
        return None

    def stub(name: str) -> dg.JobDefinition:
        return dg.GraphDefinition(name=name, node_defs=[step]).to_job()

    defs = dg.Definitions(
        jobs=[stub(DATA_JOB), stub(RETRAIN_JOB), stub(RECOMMENDATIONS_JOB)],
        schedules=automation_schedules,
        sensors=automation_sensors,
        resources={"warehouse": WarehouseResource(), "mlflow": MLflowResource()},
    )
    dg.Definitions.validate_loadable(defs)
    assert {s.job_name for s in automation_sensors} == {DATA_JOB, RETRAIN_JOB, RECOMMENDATIONS_JOB}
