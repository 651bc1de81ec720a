import numpy as np
import pandas as pd
import pytest

from recmodels.sequences import PAD, ItemIndex, SequenceConfig, build_sequences, pad_left


def _events(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at", "source_row"])


def test_item_index_is_sorted_one_based_and_maps_unknown_to_pad():
    index = ItemIndex.from_ids(["b", "a", "c", "a"])
    assert index.item_ids.tolist() == ["a", "b", "c"] and index.n_items() == 3
    assert index.to_internal(["c", "a", "zz"]).tolist() == [3, 1, PAD]
    assert index.to_external([1, 3]).tolist() == ["a", "c"]
    with pytest.raises(ValueError):
        index.to_external([PAD])


def test_sequences_are_chronological_per_key_and_skip_missing_keys():
    events = _events(
        [
            ("u2", "x", "2020-01-03", 0),
            ("u1", "y", "2020-01-02", 1),
            ("u1", "x", "2020-01-01", 2),
            (None, "z", "2020-01-01", 3),  # guest: no sequence
            ("u2", "y", "2020-01-01", 4),
        ]
    )
    sequences, keys, times, index = build_sequences(events, SequenceConfig(key="user"))
    assert index.item_ids.tolist() == ["x", "y"]  # the catalogue is what keyed events hold
    assert keys.tolist() == ["u1", "u2"]
    assert [s.tolist() for s in sequences] == [[1, 2], [2, 1]]  # x=1, y=2
    assert np.array_equal(times[0], np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[ns]"))


def test_basket_key():
    events = pd.DataFrame(
        {"basket_id": ["b1", "b1"], "item_id": [5, 3], "occurred_at": ["2020-01-02", "2020-01-01"]}
    )
    sequences, keys, _, index = build_sequences(events, SequenceConfig(key="basket"))
    assert keys.tolist() == ["b1"] and index.item_ids.tolist() == [3, 5]
    assert sequences[0].tolist() == [1, 2]


def _one_basket(n=8):
    # n items sharing one timestamp, written to the file in reverse id order
    return _events([("u", f"i{k}", "2020-01-01", n - k) for k in range(n)])


def test_file_tie_break_keeps_source_order():
    sequences, _, _, index = build_sequences(_one_basket(), SequenceConfig(tie_break="file"))
    assert index.to_external(sequences[0]).tolist() == [f"i{k}" for k in reversed(range(8))]


def test_seeded_tie_break_is_deterministic_and_independent_of_row_order():
    events = _one_basket()
    config = SequenceConfig(tie_break="seeded", seed=7)
    first = build_sequences(events, config)[0][0]
    shuffled = build_sequences(events.sample(frac=1.0, random_state=3), config)[0][0]
    assert first.tolist() == shuffled.tolist()
    assert sorted(first.tolist()) == list(range(1, 9))
    orders = {tuple(build_sequences(events, SequenceConfig(seed=s))[0][0]) for s in range(5)}
    assert len(orders) > 1  # the seed matters


def test_ties_never_reorder_distinct_timestamps():
    events = _events([("u", "late", "2020-01-02", 0), ("u", "early", "2020-01-01", 1)])
    sequences, _, _, index = build_sequences(events, SequenceConfig(seed=1))
    assert index.to_external(sequences[0]).tolist() == ["early", "late"]


def test_collapse_repeats_drops_immediate_repeats_only():
    events = _events([("u", item, f"2020-01-0{day}", day) for day, item in enumerate("aaba", start=1)])
    collapsed = build_sequences(events, SequenceConfig(collapse_repeats=True))[0][0]
    kept = build_sequences(events, SequenceConfig(collapse_repeats=False))[0][0]
    assert collapsed.tolist() == [1, 2, 1] and kept.tolist() == [1, 1, 2, 1]


def test_pad_left_keeps_the_most_recent_items():
    batch = pad_left([np.array([1, 2, 3, 4, 5]), np.array([7]), np.array([], dtype=np.int64)], max_length=3)
    assert batch.tolist() == [[3, 4, 5], [PAD, PAD, 7], [PAD, PAD, PAD]]
