"""SASRec's settings: the model and training config dataclasses, and the named presets every entry point reads.

The dataclasses live here, not beside the model and the training loop, because this module imports no torch: the
pipeline's asset configs and the command lines read their defaults from it without loading torch.
``recmodels.sasrec`` and ``recmodels.training`` re-export them.

A preset states only where it departs from the library defaults; an entry point that departs from its preset
says so in its option's help.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from recmodels.splits import SplitWindows

ITEM_TEXT_MODES = ("id", "text", "id+text")
LOSSES = ("full_ce", "sampled_softmax")
NEGATIVE_SAMPLERS = ("uniform", "popularity")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class SASRecConfig:
    hidden_size: int = 64  # D: width of item, position and hidden vectors
    num_layers: int = 2  # Transformer blocks
    num_heads: int = 2  # attention heads; must divide hidden_size
    ffn_multiplier: int = 4  # feed-forward inner width = ffn_multiplier * hidden_size
    dropout: float = 0.2  # on embeddings, attention weights and both residual branches
    max_length: int = 50  # L: most recent items the model sees; older ones are dropped
    item_text: str = "id"  # "id" | "text" | "id+text", see recmodels.sasrec
    text_dim: int = 384  # width of the frozen text vectors (all-MiniLM-L6-v2: 384)
    loss: str = "full_ce"  # "full_ce": softmax over the whole catalogue; "sampled_softmax": over n_negatives
    n_negatives: int = 256  # sampled softmax: negatives per step, shared by every position in the batch
    negative_sampler: str = "uniform"  # "uniform" | "popularity" (needs set_item_counts); logQ-corrected
    score_chunk_items: int = 65_536  # items scored per matrix product at inference, bounds memory
    # A learned full-rank item-to-item matrix W added to the scores: item j gets sum over the history's items i
    # of W[i, j]. One softmax over a single hidden vector struggles to express a basket that mixes themes
    # (the "softmax bottleneck"); the sum of per-item rows expresses any mixture, as item-kNN does. Costs
    # (n_items + 1)^2 parameters, so it is refused above recmodels.sasrec.ITEM_TO_ITEM_MAX_ITEMS.
    item_to_item: bool = False
    # A learned logit offset for items already in the history: one shared value plus one per item, both from zero.
    # Tied embeddings make a history's own items score high, which suits re-buying but not an invoice, whose
    # lines rarely repeat; the offset lets the data decide per item (a penalty in sessions, a bonus in re-orders).
    # Costs n_items + 1 weights, so unlike item_to_item it suits any catalogue.
    history_bias: bool = False
    # Behaviours the inputs may hold (recmodels.sequences.EVENT_TYPES[:event_types]); above 1 a learned embedding
    # per behaviour is added to each input item, so a viewed item and a bought one read differently. Targets are
    # always the first behaviour (purchases).
    event_types: int = 1

    def __post_init__(self) -> None:
        if self.item_text not in ITEM_TEXT_MODES:
            raise ValueError(f"item_text must be one of {ITEM_TEXT_MODES}, got {self.item_text!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.negative_sampler not in NEGATIVE_SAMPLERS:
            raise ValueError(
                f"negative_sampler must be one of {NEGATIVE_SAMPLERS}, got {self.negative_sampler!r}"
            )
        if self.event_types < 1:
            raise ValueError(f"event_types must be >= 1, got {self.event_types}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")

    @property
    def uses_text(self) -> bool:
        return self.item_text in ("text", "id+text")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # training sequences (windows) per step
    lr: float = 1e-3  # peak AdamW learning rate, reached after warm-up
    # Learning-rate multiplier of the item-to-item matrix (SASRecConfig.item_to_item). Adam moves a weight by
    # about lr per step whatever its gradient, and a pair weight has to travel much further than a Transformer
    # weight, in the few steps an epoch has when each sequence is one window.
    item_to_item_lr_scale: float = 10.0
    # AdamW decay of the item-to-item matrix: it has a weight per item pair, far more than the data constrains,
    # and, like the ridge penalty of linear item-to-item models (EASE), shrinkage keeps rare pairs from overfitting.
    item_to_item_weight_decay: float = 0.0
    weight_decay: float = 0.0  # AdamW decay on matrices only (never on biases or LayerNorm)
    warmup_steps: int = 100  # optimizer steps of linear warm-up from ~0 to lr
    schedule: str = "constant"  # after warm-up: "constant" or "cosine" (decays to 0 at the last epoch)
    grad_clip: float = 1.0  # max global gradient norm; <= 0 disables clipping
    patience: int = 10  # stop after this many validations without a better validation NDCG@10
    validate_every: int = 1  # epochs between validations
    windows_per_sequence: int = 1  # training windows of max_length+1 items per sequence, newest first
    # With timestamps given: re-draw the order of events that share a timestamp every epoch. Their recorded
    # order is arbitrary (one invoice's lines, one second's clicks), so each draw is an equally true sequence.
    shuffle_ties: bool = True
    # With timestamps given: score each position against all the unseen items of its target's timestamp group
    # (the rest of the invoice), not only the one that happens to come next. Needs loss="full_ce".
    set_targets: bool = False
    # Batches of windows of similar length (drawn from random pools of 32 batches), so little compute goes to
    # padding; batch order stays random.
    bucket_by_length: bool = True
    seed: int = 42  # model init, shuffling, dropout, negative sampling
    device: str | None = None  # None: "cuda" when available, else "cpu"
    bf16: bool = True  # bf16 autocast on CUDA (ignored on CPU, where it is slower)
    compile: bool = False  # torch.compile the Transformer on CUDA
    num_threads: int | None = None  # CPU threads per process; None: the cores this process may use / processes
    # Data-parallel training processes on this machine (recmodels.distributed: DDP, gloo on CPUs, NCCL on GPUs, one
    # GPU each); each global batch of batch_size is shared among them, so the result is one process's up to float
    # rounding and dropout draws. Under torchrun, torchrun's WORLD_SIZE counts instead.
    processes: int = 1
    show_progress: bool = True  # tqdm bar with loss and the last validation metric

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if min(self.epochs, self.batch_size, self.validate_every, self.windows_per_sequence, self.processes) < 1:
            raise ValueError("epochs, batch_size, validate_every, windows_per_sequence and processes must be >= 1")


@dataclass(frozen=True)
class Preset:
    """A model and a training configuration chosen together."""

    model: SASRecConfig
    train: TrainConfig


# The pipeline's sasrec_model defaults, sized for the demo's synthetic shop (about 30 s of CPU training). Larger
# shops get a wider model, a lower rate and every core: recmodels.sizing.SASREC_SIZES, whose first row is this.
PIPELINE = Preset(
    SASRecConfig(hidden_size=32, item_text="id+text"),
    # A model this small gains little from intra-op threads, and on a machine whose cores are busy they spin
    # against each other (10x slower epochs were measured on 2 shared cores), hence 1.
    TrainConfig(epochs=20, lr=5e-3, warmup_steps=20, patience=5, num_threads=1),
)

# `recsys replay` retrains once per drop of a real log: a wider model than the demo's shop needs, for half the
# epochs, so that a replay of many drops stays short. Its other settings are the pipeline's.
REPLAY = Preset(replace(PIPELINE.model, hidden_size=64), replace(PIPELINE.train, epochs=10))

# For a history of a few months (replay's first drops, the tests' 60-day shop), where 30-day windows would leave
# too little to train on.
SHORT_WINDOWS = SplitWindows(test_days=14, validation_days=14)

# The smallest pipeline run that still trains end to end: for the tests of the whole graph.
SMOKE = Preset(replace(PIPELINE.model, hidden_size=16), replace(PIPELINE.train, epochs=3))

# `python -m benchmarks.sequential`: the best configuration measured (BENCHMARKS.md, 2026-12-01). Runs recorded
# before then used item_to_item on every protocol, no history offset and patience 4.
SEQUENTIAL_BENCHMARK = Preset(
    SASRecConfig(hidden_size=256, num_heads=4, item_text="id+text", history_bias=True),
    TrainConfig(patience=3, lr=2e-3, batch_size=256, set_targets=True),
)

# `python -m benchmarks.ranking`: W lifts SASRec and the re-ranked result on or-customer-temporal; the offset is
# neutral there (0.3769 with it, 0.3768 without; BENCHMARKS.md, 2026-12-01). Runs recorded before then used
# neither.
RANKING_BENCHMARK = Preset(
    SASRecConfig(hidden_size=128, num_heads=4, item_text="id+text", item_to_item=True, history_bias=True),
    TrainConfig(patience=3, lr=2e-3, batch_size=256),
)
