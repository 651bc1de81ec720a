"""The data-sized defaults: SASRec's and the re-ranker's hyperparameters from the size of the shop (README,
"Defaults sized to the data"). Explicit config wins over both; the tables are the only place the sizes live.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from recmodels.presets import PIPELINE, Preset
from recmodels.sequences import EVENT_TYPES, holds_behaviour, purchased_items

if TYPE_CHECKING:
    from recmodels.ranking.ranker import RankerConfig


@dataclass(frozen=True)
class SASRecSize:
    """SASRec's settings from a number of training events (purchases before the test cut-off) upwards."""

    min_events: int
    hidden_size: int
    lr: float
    batch_size: int
    epochs: int
    patience: int
    num_threads: int | None  # None: every core
    warmup_steps: int  # optimizer steps of linear learning-rate warm-up


# A shop of a few thousand events (the demo's) trains a narrow model fast, at a high learning rate; one thread,
# because so small a model gains nothing from more and on busy shared cores threads spin against each other.
# A shop of Online Retail's size (~400k purchases) peaks at epoch 1 with those settings (test NDCG@10 0.2455):
# it wants a wider model, a lower rate and a longer warm-up, on every core. The item-to-item matrix learns at ten
# times the rate (TrainConfig.item_to_item_lr_scale) and memorises within two epochs of a 20-step warm-up; over 100
# steps (about six epochs there) it generalises (BENCHMARKS.md, "Defaults sized to the data").
SASREC_SIZES = (
    SASRecSize(0, hidden_size=PIPELINE.model.hidden_size, lr=PIPELINE.train.lr, batch_size=PIPELINE.train.batch_size,
               epochs=PIPELINE.train.epochs, patience=PIPELINE.train.patience, num_threads=PIPELINE.train.num_threads,
               warmup_steps=PIPELINE.train.warmup_steps),
    SASRecSize(50_000, hidden_size=64, lr=3e-3, batch_size=128, epochs=30, patience=4, num_threads=None,
               warmup_steps=100),
    SASRecSize(250_000, hidden_size=128, lr=2e-3, batch_size=256, epochs=30, patience=3, num_threads=None,
               warmup_steps=100),
)


def sasrec_size(training_events: int) -> SASRecSize:
    """The ``SASREC_SIZES`` row for this many training events."""
    return max((row for row in SASREC_SIZES if training_events >= row.min_events), key=lambda row: row.min_events)


def sized_sasrec(training_events: int, base: Preset = PIPELINE) -> Preset:
    """``base`` with the width, learning rate, batch, epochs, patience, threads and warm-up of ``sasrec_size``."""
    size = sasrec_size(training_events)
    model = replace(base.model, hidden_size=size.hidden_size)
    train = replace(base.train, lr=size.lr, batch_size=size.batch_size, epochs=size.epochs, patience=size.patience,
                    num_threads=size.num_threads, warmup_steps=size.warmup_steps)
    return Preset(model, train)


# The tree size the ranker's training customers support (customers with a positive candidate, at least, leaves,
# rows per leaf): a tree with more leaves than a small shop has buyers fits single customers. The 700 row is
# RankerConfig's own default, which suits ~1k customers x 100 candidates (Online Retail trains on about 1,900).
# The item-to-item matrix holds a weight per item pair and updates all of them every step, so its cost grows with
# the square of the catalogue. Online Retail's ~4,000 items train in minutes with it; a clickstream's catalogue of
# viewed items (Tmall's 9,531 brands) took 434 s against 7 s for its 2,149 purchased ones, for no better NDCG
# (BENCHMARKS.md, "Views, carts and favourites as model inputs"). Larger catalogues get it only when asked for.
ITEM_TO_ITEM_AUTO_MAX_ITEMS = 5_000


# A window of purchases with the browsing between them: the model reads the events around its last max_length
# purchases, up to this many. On the synthetic shop (4.6 events per purchase) SASRec scored 0.2990 with 50-event
# windows, 0.3733 with 200 and 0.3552 with 400, against 0.3898 on purchases alone; training every older window of a
# long history as well (0.3534 at 200) did not help (BENCHMARKS.md, "Views, carts and favourites as model inputs").
BEHAVIOUR_MAX_LENGTH = 200


def sasrec_for_sequences(train_sequences, n_items: int, max_length: int, base: Preset = PIPELINE) -> Preset:
    """``sized_sasrec`` for these training sequences (tokens of ``n_items`` items), sized by the purchases they hold,
    with the item-to-item matrix up to ``ITEM_TO_ITEM_AUTO_MAX_ITEMS`` items. Where they hold views, carts or
    favourites the model embeds the behaviour and reads ``max_length`` purchases' worth of events (the events per
    purchase times ``max_length``, at most ``BEHAVIOUR_MAX_LENGTH``), so browsing does not push purchases out."""
    purchases = sum(len(purchased_items(sequence, n_items)) for sequence in train_sequences)
    preset = sized_sasrec(purchases, base)
    model = replace(preset.model, max_length=max_length, item_to_item=n_items <= ITEM_TO_ITEM_AUTO_MAX_ITEMS)
    if not holds_behaviour(train_sequences, n_items):
        return replace(preset, model=model)
    events_per_purchase = sum(len(sequence) for sequence in train_sequences) / max(purchases, 1)
    length = min(BEHAVIOUR_MAX_LENGTH, max(max_length, round(max_length * events_per_purchase)))
    return replace(preset, model=replace(model, event_types=len(EVENT_TYPES), max_length=length))


RANKER_SIZES = ((0, 7, 20), (300, 15, 30), (700, 31, 50), (20_000, 63, 100))


def sized_ranker_config(training_customers: int, base: RankerConfig | None = None) -> RankerConfig:
    """``base`` (default ``RankerConfig()``) with ``num_leaves`` and ``min_data_in_leaf`` from ``RANKER_SIZES``
    for this many training customers."""
    from recmodels.ranking.ranker import RankerConfig

    _, leaves, per_leaf = max((row for row in RANKER_SIZES if training_customers >= row[0]), key=lambda row: row[0])
    return replace(base or RankerConfig(), num_leaves=leaves, min_data_in_leaf=per_leaf)
