"""The Markdown tables the Dagster UI shows: header names, significant digits, counts as integers."""

import numpy as np
import pandas as pd

from orchestration.store.reports import format_cell, frame_markdown, markdown_table


def test_cells_show_counts_as_integers_and_measures_to_four_significant_digits():
    assert format_cell(np.int64(12345)) == "12,345"
    assert format_cell(0.123456) == "0.1235"
    assert format_cell(0.000123456) == "0.0001235"
    assert format_cell(2.5) == "2.5"
    assert format_cell(123456.7) == "123,457"  # no exponent, no noise digits
    assert format_cell(float("nan")) == "" and format_cell(None) == ""
    assert format_cell(True) == "true"
    assert format_cell("a|b") == "a\\|b"


def test_a_table_is_headed_by_what_its_rows_are():
    importance = pd.DataFrame({"feature": ["sasrec_score", "item_purchases"], "gain": [1234.5678, 0.5],
                               "splits": [17, 3]}).set_index("feature")
    lines = markdown_table(importance).splitlines()
    assert lines[0] == "| feature | gain | splits |"
    assert lines[1] == "| --- | ---: | ---: |"
    assert lines[2] == "| sasrec_score | 1235 | 17 |"
    models = pd.DataFrame({"ndcg@10": [0.43771]}, index=pd.Index(["sasrec"]))
    assert markdown_table(models).splitlines()[0] == "| model | ndcg@10 |"  # an unnamed index holds models


def test_any_frame_keeps_its_column_names():
    frame = pd.DataFrame({"item_id": ["85123A"], "score": [0.98765]})
    assert frame_markdown(frame).splitlines() == ["| item_id | score |", "| --- | ---: |", "| 85123A | 0.9877 |"]
