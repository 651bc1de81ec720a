"""Answers kept in the warehouse: written and read back row for row, only for the same bundle and marts."""

import duckdb
import numpy as np
import pandas as pd

from orchestration.registry.bundle import Bundle
from orchestration.serving.answers import TOP
from orchestration.serving.ranked import RANKED_TABLE, ranked_frame, read_ranked


def _top(rows):
    return np.array(rows, dtype=TOP)


ANSWERS = [("u1", _top([(3, 0.9, 1, 0, 0.5), (7, 0.25, 2, 3, 1.0)])), ("u2", _top([(5, -1.5, 0, 0, 0.0)]))]


def _stored(frame: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema ml")
    con.register("frame", frame)
    con.execute(f"create table {RANKED_TABLE} as select * from frame")
    return con


def test_each_recommended_item_is_one_row_numbered_from_the_best():
    frame = ranked_frame(ANSWERS, "digest-a", "marts-1")
    assert frame["user_id"].tolist() == ["u1", "u1", "u2"]
    assert frame["position"].tolist() == [0, 1, 0]
    assert frame["item"].tolist() == [3, 7, 5] and frame["anchor"].tolist() == [0, 3, 0]
    assert frame["score"].tolist() == [0.9, 0.25, -1.5]
    assert set(frame["bundle_digest"]) == {"digest-a"} and set(frame["data_version"]) == {"marts-1"}


def test_the_same_bundle_and_marts_read_back_every_answer_exactly():
    con = _stored(ranked_frame(ANSWERS, "digest-a", "marts-1"))
    back = read_ranked(con, "digest-a", "marts-1")
    assert set(back) == {"u1", "u2"}
    for key, top in ANSWERS:
        assert back[key].dtype == TOP
        np.testing.assert_array_equal(back[key], top)


def test_another_bundle_other_marts_or_no_table_read_nothing():
    con = _stored(ranked_frame(ANSWERS, "digest-a", "marts-1"))
    assert read_ranked(con, "digest-b", "marts-1") == {}
    assert read_ranked(con, "digest-a", "marts-2") == {}
    assert read_ranked(con, "digest-a", None) == {}
    assert read_ranked(duckdb.connect(), "digest-a", "marts-1") == {}


def test_a_bundles_digest_follows_its_files_not_its_folder(tmp_path):
    def bundle(folder, weights):
        (folder / "ranker").mkdir(parents=True)
        (folder / "ranker" / "model.txt").write_bytes(weights)
        (folder / "bundle.json").write_text("{}")
        return Bundle(recommender=None, item_ids=np.array([]), spec={}, folder=folder, models={})

    first = bundle(tmp_path / "a", b"trees")
    assert first.digest == bundle(tmp_path / "b", b"trees").digest
    assert first.digest != bundle(tmp_path / "c", b"treez").digest
