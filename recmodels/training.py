"""Training loop for SASRec: teacher forcing, AdamW, warm-up, early stopping, crash-safe resume.

``train_sasrec`` is a pure function of its inputs and ``TrainConfig.seed``: on CPU the same call gives the
same weights bit for bit, and a run that is interrupted and called again with the same ``checkpoint_dir``
finishes with the weights an uninterrupted run would have had. Validation is a callback, so this module does
not depend on any particular metric implementation.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from recmodels.sasrec import SASRec, SASRecConfig

CHECKPOINT_FILE = "checkpoint.pt"
SCHEDULES = ("constant", "cosine")


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
    num_threads: int | None = None  # CPU threads; None: every core this process may use
    show_progress: bool = True  # tqdm bar with loss and the last validation metric

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.validate_every < 1 or self.windows_per_sequence < 1:
            raise ValueError("epochs, batch_size, validate_every and windows_per_sequence must be >= 1")


@dataclass
class TrainHistory:
    """What happened during training: one dict per epoch plus the early-stopping outcome."""

    # One dict per epoch: {epoch, loss, val_ndcg@10 (None when not validated), seconds}.
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0  # epoch whose weights the returned model holds
    best_metric: float | None = None  # validation NDCG@10 at best_epoch (None without a validate callback)
    time_to_best_s: float = 0.0  # training + validation seconds up to the end of best_epoch
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def make_training_examples(
    sequences: Sequence[np.ndarray], max_length: int, windows_per_sequence: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forcing pairs ``(inputs, targets)``, each ``(n_windows, max_length)`` int64, left-padded.

    A window is ``max_length + 1`` consecutive items; its input is all but the last, its target all but the
    first. The newest window of each sequence comes first; older windows (``windows_per_sequence > 1``) step
    back by ``max_length`` so no target is counted twice. Sequences shorter than 2 items teach nothing and
    are skipped.
    """
    inputs, targets = [], []
    for sequence in sequences:
        sequence = np.asarray(sequence, dtype=np.int64)
        end = len(sequence)
        for _ in range(windows_per_sequence):
            if end < 2:
                break
            window = sequence[max(0, end - max_length - 1) : end]
            row_in = np.zeros(max_length, dtype=np.int64)
            row_out = np.zeros(max_length, dtype=np.int64)
            row_in[max_length - len(window) + 1 :] = window[:-1]
            row_out[max_length - len(window) + 1 :] = window[1:]
            inputs.append(row_in)
            targets.append(row_out)
            end -= max_length
    if not inputs:
        raise ValueError("no training sequence has 2 or more items")
    return np.stack(inputs), np.stack(targets)


def timestamp_groups(timestamps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per sequence, ``1 + `` the index of each event's timestamp among the sequence's distinct timestamps
    (chronological input), so events that share a timestamp share a group id and 0 stays free for padding."""
    groups = []
    for times in timestamps:
        times = np.asarray(times).astype("datetime64[ns]").astype(np.int64)
        changes = np.diff(times, prepend=times[:1]) != 0 if len(times) else np.array([], dtype=bool)
        groups.append(1 + np.cumsum(changes, dtype=np.int64))
    return groups


def shuffle_ties(
    sequences: Sequence[np.ndarray], timestamps: Sequence[np.ndarray], rng: np.random.Generator
) -> list[np.ndarray]:
    """Each sequence with the items that share a timestamp put in a fresh random order; others stay put."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if len(lengths) == 0 or lengths.sum() == 0:
        return [np.asarray(s, dtype=np.int64) for s in sequences]
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    times = np.concatenate([np.asarray(t).astype("datetime64[ns]").astype(np.int64) for t in timestamps])
    if len(times) != len(items):
        raise ValueError("timestamps must have one entry per item of every sequence")
    owner = np.repeat(np.arange(len(lengths)), lengths)
    # Sequences are chronological, so sorting by (sequence, time, random key) only permutes within ties.
    order = np.lexsort((rng.random(len(items)), times, owner))
    return np.split(items[order], np.cumsum(lengths)[:-1])


BUCKET_POOL_BATCHES = 32  # batches per pool that length bucketing sorts: larger pools pad less, mix less


def epoch_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, bucket_by_length: bool = True
) -> list[torch.Tensor]:
    """Index batches covering ``0..len(lengths)-1`` once, in random order; with bucketing, each batch holds
    windows of similar length from one random pool of ``BUCKET_POOL_BATCHES`` batches."""
    order = torch.randperm(len(lengths), generator=generator)
    if not bucket_by_length:
        return list(order.split(batch_size))
    pool = batch_size * BUCKET_POOL_BATCHES
    batches = []
    for members in order.split(pool):
        by_length = members[torch.argsort(lengths[members], stable=True)]
        batches.extend(by_length.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _resolve_device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def _make_optimizer(model: SASRec, config: TrainConfig) -> torch.optim.AdamW:
    pairs = [model.item_to_item.weight] if hasattr(model, "item_to_item") else []
    rest = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in pairs)]
    groups = [
        {"params": [p for p in rest if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in rest if p.ndim < 2], "weight_decay": 0.0},
    ]
    if pairs:
        groups.append({
            "params": pairs,
            "weight_decay": config.item_to_item_weight_decay,
            "lr": config.lr * config.item_to_item_lr_scale,
        })
    return torch.optim.AdamW(groups, lr=config.lr)


def _run_fingerprint(
    model_config: SASRecConfig, train_config: TrainConfig, n_items: int, n_examples: int
) -> dict:
    # Fields that may change between a crash and its resume: the epoch budget and cosmetics.
    loose = {"epochs", "show_progress", "num_threads", "device"}
    return {
        "model_config": asdict(model_config),
        "train_config": {k: v for k, v in asdict(train_config).items() if k not in loose},
        "n_items": n_items,
        "n_examples": n_examples,
    }


def _cpu_state(model: SASRec) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


def train_sasrec(
    train_sequences: Sequence[np.ndarray],
    n_items: int,
    model_config: SASRecConfig,
    train_config: TrainConfig = TrainConfig(),
    validate: Callable[[SASRec], float] | None = None,
    item_text_embeddings: torch.Tensor | np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
    train_timestamps: Sequence[np.ndarray] | None = None,
) -> tuple[SASRec, TrainHistory]:
    """Train SASRec on ``train_sequences`` (internal ids, chronological) and return ``(model, history)``.

    ``validate(model) -> NDCG@10`` (higher is better) drives early stopping, and the returned model holds the
    weights of the best validation; without it, the last epoch's weights. With ``checkpoint_dir``, the full
    training state is saved after every epoch and a later call with the same directory resumes from it.
    ``train_timestamps`` (aligned with the sequences) enable ``TrainConfig.shuffle_ties``.
    """
    device = _resolve_device(train_config.device)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(train_config.num_threads or _available_cores())
    try:
        return _train(
            train_sequences,
            n_items,
            model_config,
            train_config,
            validate,
            item_text_embeddings,
            checkpoint_dir,
            device,
            train_timestamps,
        )
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    train_sequences: Sequence[np.ndarray],
    n_items: int,
    model_config: SASRecConfig,
    train_config: TrainConfig,
    validate: Callable[[SASRec], float] | None,
    item_text_embeddings: torch.Tensor | np.ndarray | None,
    checkpoint_dir: str | Path | None,
    device: torch.device,
    timestamps: Sequence[np.ndarray] | None,
) -> tuple[SASRec, TrainHistory]:
    tie_timestamps = timestamps if train_config.shuffle_ties else None
    def examples(epoch: int) -> tuple[np.ndarray, np.ndarray]:
        sequences = train_sequences
        if tie_timestamps is not None:
            # Drawn from (seed, epoch), not from a running generator, so a resumed run draws the same orders.
            rng = np.random.default_rng([train_config.seed, epoch])
            sequences = shuffle_ties(train_sequences, tie_timestamps, rng)
        return make_training_examples(sequences, model_config.max_length, train_config.windows_per_sequence)

    inputs_np, targets_np = examples(0)
    inputs = torch.from_numpy(inputs_np).to(device)  # (N, L)
    targets = torch.from_numpy(targets_np).to(device)  # (N, L)
    target_groups = None
    if train_config.set_targets and timestamps is not None:
        # Shuffling only permutes items inside a group, so the group of each position never changes.
        _, groups_np = make_training_examples(
            timestamp_groups(timestamps), model_config.max_length, train_config.windows_per_sequence
        )
        target_groups = torch.from_numpy(groups_np).to(device)  # (N, L)
    n_examples = len(inputs)
    steps_per_epoch = math.ceil(n_examples / train_config.batch_size)
    total_steps = steps_per_epoch * train_config.epochs

    torch.manual_seed(train_config.seed)  # also seeds every CUDA device
    shuffle = torch.Generator().manual_seed(train_config.seed)
    model = SASRec(model_config, n_items, item_text_embeddings).to(device)
    if model_config.loss == "sampled_softmax" and model_config.negative_sampler == "popularity":
        model.set_item_counts(np.bincount(targets_np.ravel(), minlength=n_items + 1))
    optimizer = _make_optimizer(model, train_config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: _lr_factor(step, train_config.warmup_steps, total_steps, train_config.schedule),
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and train_config.bf16
        else contextlib.nullcontext()
    )
    if train_config.compile and device.type == "cuda":
        model.compile(dynamic=True)  # compiles forward only; the state dict keeps its plain names

    history = TrainHistory()
    best_state = _cpu_state(model)
    best_metric = float("-inf")
    stale_validations = 0
    start_epoch = 1
    fingerprint = _run_fingerprint(model_config, train_config, n_items, n_examples)
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if checkpoint_path is not None and checkpoint_path.exists():
        # weights_only: a checkpoint is tensors, numbers, strings, lists and dicts; nothing else may unpickle.
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if saved["fingerprint"] != fingerprint:
            raise ValueError(f"{checkpoint_path} belongs to another run (config, catalogue or data differ)")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        if device.type == "cuda" and saved["cuda_rng"]:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        shuffle.set_state(saved["shuffle_rng"])
        best_state, best_metric = saved["best_state"], saved["best_metric"]
        stale_validations = saved["stale_validations"]
        history = TrainHistory(**saved["history"])
        start_epoch = saved["epoch"] + 1

    bar = tqdm(
        total=max(0, train_config.epochs - start_epoch + 1) * steps_per_epoch,
        disable=not train_config.show_progress or history.stopped_early,
        desc="sasrec",
        unit="step",
    )
    model.train()
    for epoch in range(start_epoch, train_config.epochs + 1):
        if history.stopped_early:
            break
        started = time.perf_counter()
        if tie_timestamps is not None:
            inputs_np, targets_np = examples(epoch)
            inputs, targets = torch.from_numpy(inputs_np).to(device), torch.from_numpy(targets_np).to(device)
        lengths = (targets != 0).sum(dim=1).cpu()
        batches = epoch_batches(lengths, train_config.batch_size, shuffle, train_config.bucket_by_length)
        loss_sum = torch.zeros((), device=device)  # summed on device: no host sync per step
        for batch in batches:
            batch = batch.to(device)
            with autocast:
                groups = None if target_groups is None else target_groups[batch]
                loss = model.training_loss(inputs[batch], targets[batch], groups)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach().float()
            bar.update(1)
        record = {"epoch": epoch, "loss": loss_sum.item() / steps_per_epoch, "val_ndcg@10": None}
        improved = validate is None
        if validate is not None and epoch % train_config.validate_every == 0:
            model.eval()
            metric = float(validate(model))
            model.train()
            record["val_ndcg@10"] = metric
            if metric > best_metric:
                best_metric, best_state, stale_validations = metric, _cpu_state(model), 0
                improved = True
            else:
                stale_validations += 1
        record["seconds"] = time.perf_counter() - started
        history.epochs.append(record)
        if improved:
            history.best_epoch = epoch
            history.best_metric = None if validate is None else best_metric
            history.time_to_best_s = sum(r["seconds"] for r in history.epochs)
        history.stopped_early = validate is not None and stale_validations >= train_config.patience
        bar.set_postfix(
            epoch=epoch,
            loss=f"{record['loss']:.4f}",
            val=f"{best_metric:.4f}" if validate is not None and best_metric > float("-inf") else "-",
        )
        if checkpoint_path is not None:
            _save_checkpoint(
                checkpoint_path,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": _cpu_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                    "shuffle_rng": shuffle.get_state(),
                    "best_state": best_state if validate is not None else {},
                    "best_metric": best_metric,
                    "stale_validations": stale_validations,
                    "history": history.to_dict(),
                },
            )
    bar.close()
    if validate is not None and best_metric > float("-inf"):
        model.load_state_dict(best_state)
    model.eval()
    return model, history


def _save_checkpoint(path: Path, state: dict) -> None:
    # Write then rename: a crash mid-write leaves the previous checkpoint intact.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    os.replace(partial, path)
