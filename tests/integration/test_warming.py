"""A replacement champion built in a child process: the same data, tables and answers as building it in place, and
nothing adopted after a stop."""

import io
import threading

import numpy as np
import pandas as pd
import pytest

from orchestration.registry.tracking import MLflowTracking
from orchestration.serving.service import RecommendationService
from orchestration.serving.warming import PIECE_ENTRIES, WarmingFailed, build_apart, read_pieces, write_pieces
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY
from orchestration.store.warehouse import Warehouse


@pytest.fixture(scope="module")
def warmed_here(promoted):
    service = RecommendationService.from_champion(Warehouse(home=str(promoted.home)),
                                                  MLflowTracking(home=str(promoted.home)), DEV_PSEUDONYMIZATION_KEY)
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
