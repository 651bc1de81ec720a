"""A replacement champion built in a child process: the same data, tables and answers as building it in place,
nothing adopted after a stop, and a reload that goes through it keeps the events recorded before the swap."""

import io
import logging
import os
import shutil
import subprocess
import sys
import threading

import duckdb
import numpy as np
import pandas as pd
import pytest

from benchmarks.serving_server import promote_copy_of_champion
from orchestration.defs.ranking import FEATURES_TABLE
from orchestration.registry.tracking import MLflowTracking
from orchestration.serving import champion
from orchestration.serving.champion import ChampionHolder
from orchestration.serving.live import StoredEvents
from orchestration.serving.ranked import read_ranked, reuse_ranked
from orchestration.serving.service import RecommendationService
from orchestration.serving.warming import (
    CHILD_NICENESS,
    PIECE_ENTRIES,
    WarmingFailed,
    build_apart,
    lower_priority,
    read_pieces,
    write_pieces,
)
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY, pseudonymize
from orchestration.store.warehouse import Warehouse
from recmodels.ranking import LambdaRanker
from recmodels.recommender import RANKER


@pytest.fixture(scope="module")
def warmed_here(promoted):
    warehouse = Warehouse(home=str(promoted.home))
    service = RecommendationService.from_champion(warehouse, MLflowTracking(home=str(promoted.home)),
                                                  DEV_PSEUDONYMIZATION_KEY)
    service.bundle.compile_ranker(warehouse.paths)  # as a server does
    service.warm()
    return service


def _assert_same(got, expected) -> None:
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)
    elif isinstance(expected, dict):
        assert set(got) == set(expected)
        for key, value in expected.items():
            _assert_same(got[key], value)
    elif isinstance(expected, (np.ndarray, tuple)):
        assert len(got) == len(expected)
        for left, right in zip(got, expected) if isinstance(expected, tuple) else [(got, expected)]:
            np.testing.assert_array_equal(left, right)
    elif hasattr(expected, "toarray"):  # a sparse matrix
        np.testing.assert_array_equal(got.toarray(), expected.toarray())
    elif isinstance(expected, StoredEvents):  # every row, as a frame (NaN equal to NaN)
        assert isinstance(got, StoredEvents) and len(got) == len(expected)
        _assert_same(got.rows("k", np.arange(len(got))).frame(), expected.rows("k", np.arange(len(expected))).frame())
    else:
        assert got == expected


def test_the_child_builds_the_service_built_in_place(promoted, warmed_here):
    built = build_apart(warmed_here.bundle, promoted.home, warmed_here.key, warmed_here.version, threading.Event())
    assert built.bundle is warmed_here.bundle and built.version == warmed_here.version
    for name in ("events", "event_rows", "histories", "catalogue", "text", "as_of", "customers", "behaviour",
                 "behaviour_rows", "version", "event_ids"):
        _assert_same(getattr(built.data, name), getattr(warmed_here.data, name))
    assert set(built.tables) == set(warmed_here.tables)
    for name, table in warmed_here.tables.items():
        _assert_same(built.tables[name], table)
    expected = dict(warmed_here.answers.items())
    assert len(built.answers) == len(expected) > 10
    _assert_same(dict(built.answers.items()), expected)
    assert built.warm() == 0  # every known customer's answer came from the child


def test_the_pipeline_keeps_the_answers_a_server_would_rank_and_a_server_reads_them(promoted, warmed_here):
    # Where the ranker orders the answers, the server scores with it compiled and the pipeline with LightGBM.
    if warmed_here.recommender.serves == RANKER:
        assert all(twin is not None for twin in warmed_here.recommender.ranker.compiled_)
    with duckdb.connect(str(promoted.home / "warehouse.duckdb"), read_only=True) as con:
        stored = read_ranked(con, warmed_here.bundle.digest, warmed_here.data.version)
        assert read_ranked(con, warmed_here.bundle.digest, "other marts") == {}
    expected = dict(warmed_here.answers.items())
    assert len(stored) == len(expected) > 10
    _assert_same(stored, expected)
    fresh = RecommendationService(warmed_here.bundle, warmed_here.data, warmed_here.key, warmed_here.version,
                                  tables=warmed_here.tables)
    assert reuse_ranked(fresh, Warehouse(home=str(promoted.home))) == len(expected)
    assert fresh.warm() == 0  # nobody left to rank
    _assert_same(dict(fresh.answers.items()), expected)


def test_the_compiled_ranker_scores_the_pipelines_features_as_lightgbm(promoted, warmed_here, tmp_path):
    # Whichever model the evaluation chose to serve, the ranker was trained: its features are the real ones.
    folder = warmed_here.bundle.folder / "ranker"
    lightgbm, compiled = LambdaRanker.load(folder), LambdaRanker.load(folder)
    assert compiled.compile(tmp_path) == compiled.config.n_models
    with duckdb.connect(str(promoted.home / "warehouse.duckdb"), read_only=True) as con:
        features = con.execute(f"select * from {FEATURES_TABLE}").df()
    assert len(features) > 1000
    np.testing.assert_array_equal(compiled.score(features), lightgbm.score(features))


def test_nothing_is_adopted_after_a_stop(promoted, warmed_here):
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(WarmingFailed, match="stopped"):
        build_apart(warmed_here.bundle, promoted.home, warmed_here.key, warmed_here.version, stopped)


def test_a_large_mapping_goes_in_pieces_and_comes_back_whole():
    mapping = {f"u{i}": np.arange(i % 7) for i in range(PIECE_ENTRIES * 2 + 5)}
    sink = io.BytesIO()
    write_pieces(sink, {"data": {"histories": mapping, "version": "v1"}, "tables": {"small": {"a": 1}}})
    sink.seek(0)
    parts = read_pieces(sink)
    assert parts["data"]["version"] == "v1" and parts["tables"] == {"small": {"a": 1}}
    _assert_same(parts["data"]["histories"], mapping)


def test_a_reload_built_in_a_child_keeps_the_events_recorded_before_the_swap(promoted, tmp_path, monkeypatch, caplog):
    home = tmp_path / "recsys-home"
    shutil.copytree(promoted.home, home)
    monkeypatch.delenv("RECSYS_PSEUDONYMIZATION_KEY", raising=False)
    monkeypatch.setattr(champion, "APART_MIN_CUSTOMERS", 1)  # the small shop's replacement built apart too
    holder = ChampionHolder(Warehouse(home=str(home)), MLflowTracking(home=str(home)), DEV_PSEUDONYMIZATION_KEY, 0)
    assert holder.refresh()
    old = holder.current.service
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        raw = [r for (r,) in con.execute("select distinct customer_id from raw.order_lines order by 1").fetchall()]
    customer, other = [r for r in raw if pseudonymize(r, DEV_PSEUDONYMIZATION_KEY) in old.data.histories][:2]
    event = pd.DataFrame({"event_id": ["child-1"], "user_id": [customer], "session_id": [None],
                          "event_type": ["purchase"], "occurred_at": [pd.Timestamp("2030-01-01")],
                          "quantity": [1.0], "price": [None], "item_id": [str(old.bundle.item_ids[0])]})
    assert holder.record_events(event) == 1
    expected = {who: old.recommend_user(who, k=10) for who in (customer, other)}
    version = promote_copy_of_champion(home)
    with caplog.at_level(logging.INFO, logger=champion.__name__):
        assert holder.check_now(timeout=60) and holder.last_swapped
    assert holder.current.version == version and "built in a child process" in caplog.text
    new = holder.current.service
    for who, answer in expected.items():
        got = new.recommend_user(who, k=10)
        assert got["history_length"] == answer["history_length"]
        pd.testing.assert_frame_equal(got["items"], answer["items"])
    holder.close(timeout=60)


def test_the_child_yields_the_cores_from_its_first_instruction():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lower_priority(child.pid)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICENESS, 19)
    finally:
        child.kill()
        child.wait()
    lower_priority(child.pid)  # gone by now: no error
