"""The Tmall brand log in the generic format: repeated same-day rows become counts, type codes the shop's names."""

import pandas as pd
import pytest

from benchmarks.tmall_to_generic import tmall_to_generic


def test_repeated_rows_become_one_event_with_their_count_and_every_row_is_accounted_for():
    raw = pd.DataFrame({"user_id": [7, 7, 7, 7, 8], "brand_id": [11, 11, 11, 12, 11], "type": [0, 0, 1, 3, 2],
                        "visit_datetime": ["6-4", "6-4", "6-4", "6-5", "4-15"]})
    interactions, items = tmall_to_generic(raw)
    assert interactions.to_dict("records") == [
        {"user_id": "8", "item_id": "11", "timestamp": "2014-04-15T00:00:00", "event_type": "fav", "quantity": 1},
        {"user_id": "7", "item_id": "11", "timestamp": "2014-06-04T00:00:00", "event_type": "buy", "quantity": 1},
        {"user_id": "7", "item_id": "11", "timestamp": "2014-06-04T00:00:00", "event_type": "click", "quantity": 2},
        {"user_id": "7", "item_id": "12", "timestamp": "2014-06-05T00:00:00", "event_type": "cart", "quantity": 1},
    ]
    assert interactions["quantity"].sum() == len(raw)
    assert items.to_dict("list") == {"item_id": ["11", "12"], "title": ["", ""]}


@pytest.mark.parametrize(("column", "value", "message"), [
    ("type", 5, r"column 'type' has codes \[5\]"),
    ("visit_datetime", "June 4", r"visit_datetime 'June 4' is not a month-day date"),
])
def test_bad_input_names_the_column_and_what_was_expected(column, value, message):
    raw = pd.DataFrame({"user_id": [7], "brand_id": [11], "type": [0], "visit_datetime": ["6-4"]})
    raw[column] = [value]
    with pytest.raises(SystemExit, match=message):
        tmall_to_generic(raw, where="t.csv")
