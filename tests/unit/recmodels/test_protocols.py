import numpy as np
import pandas as pd

from recmodels.protocols import generic_loo, k_core, or_customer_temporal, or_session


def _raw():
    """Invoices I1..I5 hold A..E; F and G start a 5-core cascade; a duplicate, a re-scan, a blank row."""
    rows = []
    for n in range(1, 6):
        items = "EDCBA" if n == 1 else "ABCDE"  # I1 is written in reverse: the file order is visible
        rows += [(f"I{n}", item, 1, f"2011-01-0{n} 10:00:00") for item in items]
    rows += [(f"I{n}", "F", 1, f"2011-01-0{n} 10:00:00") for n in range(1, 5)]
    # I6 has 5 rows, but G (only here) goes in pass 1, then I6 (4 rows) in pass 2, then F (4 rows) in pass 3.
    rows += [("I6", item, 1, "2011-01-06 10:00:00") for item in "ABCFG"]
    rows.append(("I1", "A", 1, "2011-01-01 10:00:30"))  # same (invoice, item, quantity, minute): a duplicate
    rows.append(("I2", "B", 3, "2011-01-02 10:00:00"))  # another quantity: a second interaction
    frame = pd.DataFrame(rows, columns=["InvoiceNo", "StockCode", "Quantity", "InvoiceDate"])
    frame["Description"] = "thing"
    blank = pd.DataFrame([("I3", "H", 1, "2011-01-03 10:00:00", " ")], columns=frame.columns)
    return pd.concat([frame, blank], ignore_index=True)


def test_k_core_iterates_until_stable():
    frame = _raw()
    kept, passes = k_core(frame[frame["StockCode"] != "H"], "InvoiceNo", "StockCode", k=5)
    assert passes == 4  # G, then I6, then F, then a pass that removes nothing
    assert sorted(kept["StockCode"].unique()) == list("ABCDE")
    assert sorted(kept["InvoiceNo"].unique()) == ["I1", "I2", "I3", "I4", "I5"]


def test_or_session_counts_and_targets():
    split, info = or_session(_raw(), file_order=True)
    assert info["rows_raw"] == 37 and info["rows_with_description"] == 36 and info["rows_deduplicated"] == 35
    assert info["core_passes"] == 4
    assert (info["sequences"], info["items"], info["interactions"]) == (5, 5, 26)
    assert split.name == "or-session-fileorder" and split.n_items == 5
    # file order: I1 reads E D C B A (A=1 .. E=5), so A is its test target and B its validation target
    assert split.test.keys.tolist() == ["I1", "I2", "I3", "I4", "I5"]
    assert split.test.histories[0].tolist() == [5, 4, 3, 2]
    assert split.test.targets[0].tolist() == [1] and split.validation.targets[0].tolist() == [2]
    assert split.test.histories[1].tolist() + split.test.targets[1].tolist() == [1, 2, 3, 4, 5, 2]


def test_or_session_seeded_order_is_reproducible():
    first, _ = or_session(_raw(), seed=3)
    again, _ = or_session(_raw().sample(frac=1.0, random_state=0), seed=3)
    assert first.name == "or-session"
    for a, b in zip(first.train_for_test, again.train_for_test):
        assert a.tolist() == b.tolist()


def _fct():
    rows = [
        ("u1", "a", "2011-09-01", "purchase"),
        ("u1", "b", "2011-10-20", "purchase"),
        ("u1", "c", "2011-11-09", "purchase"),  # the test cut-off itself: a test target
        ("u1", "d", "2011-11-01", "view"),  # not a purchase
        ("u2", "a", "2011-11-20", "purchase"),  # no history before either cut-off
        (None, "a", "2011-09-01", "purchase"),  # guest
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at", "event_type"])


def test_or_customer_temporal_cutoffs():
    split = or_customer_temporal(_fct())
    a, b, c = 1, 2, 3
    assert split.n_items == 3 and split.name == "or-customer-temporal"
    assert [t.tolist() for t in split.validation.targets] == [[b]]
    assert [h.tolist() for h in split.test.histories] == [[a, b]]
    assert [t.tolist() for t in split.test.targets] == [[c]]
    assert [s.tolist() for s in split.train] == [[a]]
    # An earlier month, as benchmarks.ranking uses to train its ranker on more customers: the window ends where the
    # protocol's test month begins, so c (bought at that instant) is not a target.
    earlier = or_customer_temporal(_fct(), test_cutoff="2011-10-09", validation_cutoff="2011-08-01",
                                   test_end="2011-11-09")
    assert [h.tolist() for h in earlier.test.histories] == [[a]]
    assert [t.tolist() for t in earlier.test.targets] == [[b]]
    assert len(earlier.validation) == 0  # nobody bought before 2011-08-01


def test_generic_loo_by_user():
    interactions = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "v"],
            "item_id": [10, 20, 30, 10],
            "occurred_at": pd.to_datetime(["2020-01-03", "2020-01-01", "2020-01-02", "2020-01-01"]),
        }
    )
    split = generic_loo(interactions)
    assert split.n_items == 3
    assert split.test.targets[0].tolist() == [1] and split.validation.targets[0].tolist() == [3]
    assert np.array_equal(split.test.keys, ["u"])
