"""sasrec_model's config: fields left null follow the shop's size, fields given win."""

import numpy as np

from orchestration.defs.models import SASRecModelConfig
from recmodels.splits import EvalSet, Split, StoredSplit


def _stored(events_per_sequence: int, sequences: int = 100) -> StoredSplit:
    empty = EvalSet(histories=[], targets=[], keys=np.array([]))
    train = [np.ones(events_per_sequence, dtype=np.int64)] * sequences
    split = Split(n_items=30_000, train=train, validation=empty, test=empty, train_for_test=train, name="t")
    return StoredSplit(split, [], [], {"sequence_config": {"max_length": 40}})


def test_null_fields_are_sized_to_the_training_events_and_given_ones_win():
    small_model, small_train = SASRecModelConfig().to_configs(_stored(100), text_dim=8)  # 10,000 events
    large_model, large_train = SASRecModelConfig().to_configs(_stored(3_000), text_dim=8)  # 300,000 events
    assert (small_model.hidden_size, small_train.lr, small_train.num_threads) == (32, 5e-3, 1)
    assert (large_model.hidden_size, large_train.lr, large_train.batch_size, large_train.patience,
            large_train.warmup_steps) == (128, 2e-3, 256, 3, 100)
    assert large_model.max_length == 40 and large_model.text_dim == 8
    assert not large_model.item_to_item  # 30,000 items: above the item-to-item matrix's limits
    given = SASRecModelConfig(hidden_size=48, lr=1e-3, num_threads=2, warmup_steps=7, processes=2)
    given_model, given_train = given.to_configs(_stored(3_000), 8)
    assert (given_model.hidden_size, given_train.lr, given_train.num_threads, given_train.warmup_steps,
            given_train.batch_size, given_train.processes) == (48, 1e-3, 2, 7, 256, 2)
    assert small_train.processes == 1  # one process unless asked


def _split(n_items: int, train: list[np.ndarray]) -> StoredSplit:
    empty = EvalSet(histories=[], targets=[], keys=np.array([]))
    split = Split(n_items=n_items, train=train, validation=empty, test=empty, train_for_test=train, name="t")
    return StoredSplit(split, [], [], {"sequence_config": {"max_length": 10}})


def test_the_item_to_item_matrix_is_on_by_default_up_to_its_auto_limit():
    at_limit, _ = SASRecModelConfig().to_configs(_split(5_000, [np.arange(1, 11)]), None)
    above, _ = SASRecModelConfig().to_configs(_split(5_001, [np.arange(1, 11)]), None)
    assert at_limit.item_to_item and not above.item_to_item
    forced, _ = SASRecModelConfig(item_to_item=True).to_configs(_split(5_001, [np.arange(1, 11)]), None)
    assert forced.item_to_item


def test_views_in_the_sequences_switch_on_the_behaviour_embedding_and_a_longer_window():
    # 5 items, so a view of item i is the token i + 6. 25 events for 5 purchases: 5 events per purchase.
    browsing = np.array([3 + 6] * 20 + [1, 2, 3, 4, 5])
    model, train = SASRecModelConfig().to_configs(_split(5, [browsing]), None)
    assert model.event_types == 4 and model.max_length == 50  # 10 purchases' worth: 10 x 5 events
    plain, plain_train = SASRecModelConfig().to_configs(_split(5, [np.array([1, 2, 3, 4, 5])]), None)
    assert plain.event_types == 1 and plain.max_length == 10
    # Sized by the 5 purchases, not the 25 events: the same row of SASREC_SIZES either way.
    assert (model.hidden_size, train.lr) == (plain.hidden_size, plain_train.lr)
    # A heavy browser's window stops at BEHAVIOUR_MAX_LENGTH.
    long_model, _ = SASRecModelConfig().to_configs(_split(5, [np.array([3 + 6] * 400 + [1])]), None)
    assert long_model.max_length == 200
