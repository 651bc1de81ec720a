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
    assert not large_model.item_to_item  # 30,000 items: above the item-to-item limit
    given = SASRecModelConfig(hidden_size=48, lr=1e-3, num_threads=2, warmup_steps=7)
    given_model, given_train = given.to_configs(_stored(3_000), 8)
    assert (given_model.hidden_size, given_train.lr, given_train.num_threads, given_train.warmup_steps,
            given_train.batch_size) == (48, 1e-3, 2, 7, 256)
