import pandas as pd

from orchestration.quality import MART_SUITES, QualityThresholds, validate_frame


def _suite(table, blocking=True):
    return next(s for s in MART_SUITES if s.table == table and s.blocking == blocking)


def _interactions(**overrides):
    frame = pd.DataFrame(
        {
            "user_id": ["u_0123456789abcdef", "u_fedcba9876543210"],
            "item_id": ["85123A", "71053"],
            "occurred_at": pd.to_datetime(["2011-01-01 10:00", "2011-06-01 12:30"]),
            "event_type": ["purchase", "purchase"],
            "quantity": [6, 1],
            "unit_price": [2.55, 3.39],
        }
    )
    return frame.assign(**overrides)


def test_clean_interactions_pass():
    outcome = validate_frame(_interactions(), _suite("fct_interactions").build(QualityThresholds()))
    assert outcome.success, outcome.summary()
    assert outcome.evaluated == 10


def test_raw_customer_id_and_old_timestamp_fail():
    frame = _interactions(user_id=["17850", "u_fedcba9876543210"], occurred_at=pd.to_datetime(["1970-01-01", "2011-01-01"]))
    outcome = validate_frame(frame, _suite("fct_interactions").build(QualityThresholds()))
    failed = sorted(f["expectation"] for f in outcome.failures)
    assert failed == ["expect_column_values_to_be_between", "expect_column_values_to_match_regex"]


def test_empty_interactions_fail_on_volume():
    outcome = validate_frame(_interactions().iloc[0:0], _suite("fct_interactions").build(QualityThresholds()))
    assert not outcome.success
    assert [f["expectation"] for f in outcome.failures] == ["expect_table_row_count_to_be_between"]


def test_reconciliation_must_balance_exactly():
    suite = _suite("reconciliation")
    frame = pd.DataFrame(
        {"load_id": ["a", "b"], "raw_rows": [10, 7], "declared_rows": [10, 7], "kept_rows": [6, 5],
         "duplicate_rows": [1, 0], "rejected_rows": [3, 1]}
    )
    outcome = validate_frame(suite.prepare(frame), suite.build(QualityThresholds()))
    assert not outcome.success  # load b: 5 + 0 + 1 = 6 != 7
    assert outcome.failures[0]["expectation"] == "expect_column_pair_values_to_be_equal"
    frame.loc[1, "rejected_rows"] = 2
    assert validate_frame(suite.prepare(frame), suite.build(QualityThresholds())).success


def test_item_text_coverage_only_warns():
    suite = _suite("dim_items", blocking=False)
    frame = pd.DataFrame({"has_text": [True, False, False]})
    assert not validate_frame(frame, suite.build(QualityThresholds())).success
    assert validate_frame(frame, suite.build(QualityThresholds(min_item_text_fraction=0.3))).success


def test_every_expectation_is_listed_with_its_bound_and_observed_value():
    frame = _interactions(quantity=[6, 2_000_000])
    outcome = validate_frame(frame, _suite("fct_interactions").build(QualityThresholds()))
    assert len(outcome.checks) == outcome.evaluated == 10  # passed ones too, in the suite's order
    first = outcome.checks[0]
    assert (first["expectation"], first["bound"], first["observed"], first["passed"]) == (
        "table row count to be between", ">= 1", "observed 2", True)
    quantity = next(c for c in outcome.checks if c["column"] == "quantity" and "between" in c["expectation"])
    assert quantity["bound"] == "between 1 and 1000000" and not quantity["passed"]
    assert quantity["observed"] == "1 of 2 rows fail (50.00%), e.g. ['2000000']"
    assert outcome.summary().splitlines()[0] == "9 of 10 expectations passed; failed:"
