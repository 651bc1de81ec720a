import numpy as np
import pandas as pd
import pytest

from recmodels.event_table import EventTable


def _frame():
    return pd.DataFrame({"user_key": ["a", "b", "c"], "item": np.array([3, 1, 2], np.int64),
                         "occurred_at": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-03"]),
                         "basket_id": ["x", None, "y"]})


def test_a_frames_columns_read_as_the_frame_reads_them():
    frame = _frame()
    table = EventTable.of(frame)
    assert EventTable.of(table) is table
    assert len(table) == 3 and table.columns == ("user_key", "item", "occurred_at", "basket_id")
    assert "basket_id" in table and "price" not in table
    assert table["item"].tolist() == [3, 1, 2] and table["item"].dtype == np.int64
    assert table["user_key"].dtype == object and pd.isna(table["basket_id"][1])
    pd.testing.assert_frame_equal(table.frame(), frame)


def test_take_assign_and_concat():
    table = EventTable.of(_frame())
    taken = table.take(np.array([2, 0]))
    assert taken["item"].tolist() == [2, 3] and taken.take(np.array([True, False]))["item"].tolist() == [2]
    # A text value is every row's, as an object column, in its place; a new column goes last.
    labelled = taken.assign(user_key="row-0", quantity=np.array([1.0, 2.0]))
    assert labelled.columns == ("user_key", "item", "occurred_at", "basket_id", "quantity")
    assert labelled["user_key"].tolist() == ["row-0", "row-0"] and labelled["user_key"].dtype == object
    empty = table.take(np.array([], np.int64))
    assert len(empty) == 0 and EventTable.concat([], empty) is empty
    joined = EventTable.concat([taken, table.take(np.array([1]))], empty)
    assert joined["item"].tolist() == [2, 3, 1] and joined.columns == table.columns


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        EventTable({"item": np.array([1, 2]), "user_key": np.array(["a"], dtype=object)})
