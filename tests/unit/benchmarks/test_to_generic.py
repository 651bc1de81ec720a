"""benchmarks.to_generic: an Online Retail file rewritten in the documented generic layout."""

import pandas as pd
import pytest

from benchmarks.to_generic import to_generic
from orchestration.ingest.errors import IngestError


def _raw(**renames: str) -> pd.DataFrame:
    frame = pd.DataFrame({
        "InvoiceNo": ["536365", "536365", "C536379", "536380"],
        "StockCode": ["85123A", "71053", "85123A", "85123A"],
        "Description": ["WHITE HANGING HEART", "WHITE METAL LANTERN", "WHITE HANGING HEART ", "HEART, WHITE"],
        "Quantity": ["6", "6", "-1", "2"],
        "InvoiceDate": ["12/1/2010 8:26", "12/1/2010 8:26", "12/1/2010 9:41", "12/1/2010 9:45"],
        "UnitPrice": ["2.55", "3.39", "2.55", "2.95"],
        "CustomerID": ["17850.0", "17850.0", "", "14911"],
        "Country": ["United Kingdom"] * 4,
    })
    return frame.rename(columns=renames)


def test_every_row_becomes_one_interaction_in_the_generic_columns():
    interactions, _ = to_generic(_raw())
    assert list(interactions.columns) == ["user_id", "item_id", "timestamp", "event_type", "quantity", "price",
                                          "session_id"]
    assert interactions["user_id"].tolist() == ["17850", "17850", "", "14911"]  # spreadsheet ".0" removed
    assert interactions["timestamp"].tolist() == ["2010-12-01T08:26:00", "2010-12-01T08:26:00",
                                                  "2010-12-01T09:41:00", "2010-12-01T09:45:00"]
    # A cancellation keeps its negative quantity: the generic ingest, not the conversion, quarantines it.
    assert interactions["quantity"].tolist() == ["6", "6", "-1", "2"]
    assert interactions["session_id"].tolist() == ["536365", "536365", "C536379", "536380"]


def test_each_item_is_titled_with_its_most_frequent_description():
    _, items = to_generic(_raw())
    titles = dict(zip(items["item_id"], items["title"]))
    # "WHITE HANGING HEART" twice (once with a trailing space) against "HEART, WHITE" once.
    assert titles == {"71053": "WHITE METAL LANTERN", "85123A": "WHITE HANGING HEART"}


def test_the_online_retail_ii_column_names_are_read_too():
    interactions, _ = to_generic(_raw(InvoiceNo="Invoice", UnitPrice="Price", CustomerID="Customer ID"))
    assert interactions["price"].tolist() == ["2.55", "3.39", "2.55", "2.95"]


def test_a_file_of_another_layout_is_refused_by_name():
    with pytest.raises(IngestError, match="orders.csv .*required column.*missing: customer_id"):
        to_generic(_raw().drop(columns=["CustomerID"]), where="orders.csv")
