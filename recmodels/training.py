"""Training loop for SASRec: teacher forcing, AdamW, warm-up, early stopping, crash-safe resume.

``train_sasrec`` is a pure function of its inputs and ``TrainConfig.seed``: on CPU the same call gives the
same weights bit for bit, and a run that is interrupted and called again with the same ``checkpoint_dir``
finishes with the weights an uninterrupted run would have had. ``TrainConfig.processes`` (or torchrun) trains
data-parallel, with the gradients of one process's batches (``recmodels.distributed``). Validation is a callback,
so this module does not depend on any particular metric implementation. ``fit_then_refit`` is the protocol the
pipeline and the benchmarks share: early stopping on validation, then a refit on the test phase's training data.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from recmodels import distributed

# TrainConfig is defined with the presets, which load without torch; re-exported beside the loop it configures.
from recmodels.presets import TrainConfig
from recmodels.sasrec import SASRec, SASRecConfig

CHECKPOINT_FILE = "checkpoint.pt"


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
    loose = {"epochs", "show_progress", "num_threads", "device", "processes"}
    return {
        "model_config": asdict(model_config),
        "train_config": {k: v for k, v in asdict(train_config).items() if k not in loose},
        "n_items": n_items,
        "n_examples": n_examples,
    }


def _cpu_state(model: SASRec) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


@distributed.data_parallel
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
    ``train_timestamps`` (aligned with the sequences) enable ``TrainConfig.shuffle_ties``. With
    ``TrainConfig.processes > 1``, or under torchrun, the run is data-parallel (``recmodels.distributed``).
    """
    group, device = distributed.join(train_config.device)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":  # the processes of a group share the cores
        torch.set_num_threads(train_config.num_threads or max(1, _available_cores() // group.world_size))
    try:
        return _train(train_sequences, n_items, model_config, train_config,
                      distributed.validation(validate, group, device), item_text_embeddings, checkpoint_dir, device,
                      train_timestamps, group)
    finally:
        torch.set_num_threads(previous_threads)


@dataclass
class Refit:
    """What ``fit_then_refit`` trained."""

    model: SASRec  # the model to evaluate on test: refit, or the selected model when there was no refit
    selected: SASRec  # best-validation weights of the run on the training sequences
    selection: TrainHistory  # the early-stopped run
    refit: TrainHistory | None  # the run on the refit sequences, None without them
    selection_s: float  # wall-clock seconds of each run
    refit_s: float


@distributed.data_parallel  # one group for both runs: starting processes costs seconds each time
def fit_then_refit(
    train_sequences: Sequence[np.ndarray],
    refit_sequences: Sequence[np.ndarray] | None,
    n_items: int,
    model_config: SASRecConfig,
    train_config: TrainConfig,
    validate: Callable[[SASRec], float],
    item_text_embeddings: torch.Tensor | np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
    train_timestamps: Sequence[np.ndarray] | None = None,
    refit_timestamps: Sequence[np.ndarray] | None = None,
) -> Refit:
    """Early-stop on validation, then train afresh on ``refit_sequences`` for exactly the chosen epoch count.

    The refit sequences are the training data of the test phase (the training sequences plus the validation
    window): the refit sees more data and never the test rows, and the epoch count is the only thing it takes
    from validation. Without ``refit_sequences`` the selected model is the result. With ``checkpoint_dir`` each
    run checkpoints in its own subfolder, ``validation`` and ``test``.
    """
    def checkpoints(phase: str) -> Path | None:
        return None if checkpoint_dir is None else Path(checkpoint_dir) / phase

    started = time.perf_counter()
    selected, selection = train_sasrec(
        train_sequences, n_items, model_config, train_config, validate=validate,
        item_text_embeddings=item_text_embeddings, checkpoint_dir=checkpoints("validation"),
        train_timestamps=train_timestamps,
    )
    selection_s = time.perf_counter() - started
    if refit_sequences is None:
        return Refit(selected, selected, selection, None, selection_s, 0.0)
    started = time.perf_counter()
    model, refit = train_sasrec(
        refit_sequences, n_items, model_config, replace(train_config, epochs=selection.best_epoch),
        item_text_embeddings=item_text_embeddings, checkpoint_dir=checkpoints("test"),
        train_timestamps=refit_timestamps,
    )
    return Refit(model, selected, selection, refit, selection_s, time.perf_counter() - started)


def _epoch_examples(sequences: Sequence[np.ndarray], tie_timestamps: Sequence[np.ndarray] | None,
                    model_config: SASRecConfig, train_config: TrainConfig, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    if tie_timestamps is not None:
        # Drawn from (seed, epoch), not from a running generator, so a resumed run draws the same orders.
        rng = np.random.default_rng([train_config.seed, epoch])
        sequences = shuffle_ties(sequences, tie_timestamps, rng)
    return make_training_examples(sequences, model_config.max_length, train_config.windows_per_sequence)


def purchase_windows(targets: np.ndarray, n_items: int) -> np.ndarray:
    """(N,) which training windows have a purchase to predict. In a clickstream most windows of browsers who
    never bought hold none; they teach nothing (views are inputs, not targets) and are left out."""
    return ((targets > 0) & (targets <= n_items)).any(axis=1)


@dataclass
class _Run:
    """A training run's state: what changes from epoch to epoch and what a checkpoint holds."""

    model: SASRec
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    shuffle: torch.Generator  # batch order
    best_state: dict[str, torch.Tensor]
    history: TrainHistory = field(default_factory=TrainHistory)
    best_metric: float = float("-inf")
    stale_validations: int = 0
    start_epoch: int = 1
    group: distributed.Group = field(default_factory=distributed.Group)
    loss: Callable[..., torch.Tensor] | None = None  # the model's training loss, behind DDP in a group


def _start_run(
    model_config: SASRecConfig,
    train_config: TrainConfig,
    n_items: int,
    item_text_embeddings: torch.Tensor | np.ndarray | None,
    device: torch.device,
    first_targets: np.ndarray,
    total_steps: int,
    group: distributed.Group,
) -> _Run:
    """A fresh model and optimizer, seeded; the seeding comes first so that initialisation is reproducible."""
    torch.manual_seed(train_config.seed)  # also seeds every CUDA device
    shuffle = torch.Generator().manual_seed(train_config.seed)
    model = SASRec(model_config, n_items, item_text_embeddings).to(device)
    if model_config.loss == "sampled_softmax" and model_config.negative_sampler == "popularity":
        bought = first_targets[first_targets <= n_items]  # other behaviours are never targets
        model.set_item_counts(np.bincount(bought, minlength=n_items + 1))
    optimizer = _make_optimizer(model, train_config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: _lr_factor(step, train_config.warmup_steps, total_steps, train_config.schedule),
    )
    if train_config.compile and device.type == "cuda":
        model.compile(dynamic=True)  # compiles forward only; the state dict keeps its plain names
    loss = distributed.training_loss(model, group, device)
    return _Run(model, optimizer, scheduler, shuffle, best_state=_cpu_state(model), group=group, loss=loss)


def _resume(run: _Run, path: Path, fingerprint: dict, device: torch.device) -> None:
    # weights_only: a checkpoint is tensors, numbers, strings, lists and dicts; nothing else may unpickle. In a
    # group, rank 0 reads it and sends it on, so ranks on machines that do not share its disk resume alike.
    saved = distributed.from_rank_zero(
        lambda: torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None, run.group
    )
    if saved is None:
        return
    if saved["fingerprint"] != fingerprint:
        raise ValueError(f"{path} belongs to another run (config, catalogue or data differ)")
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    if device.type == "cuda" and saved["cuda_rng"]:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    run.shuffle.set_state(saved["shuffle_rng"])
    run.best_state, run.best_metric = saved["best_state"], saved["best_metric"]
    run.stale_validations = saved["stale_validations"]
    run.history = TrainHistory(**saved["history"])
    run.start_epoch = saved["epoch"] + 1


def _checkpoint(run: _Run, fingerprint: dict, epoch: int, device: torch.device, validated: bool) -> dict:
    return {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "model": _cpu_state(run.model),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "shuffle_rng": run.shuffle.get_state(),
        "best_state": run.best_state if validated else {},
        "best_metric": run.best_metric,
        "stale_validations": run.stale_validations,
        "history": run.history.to_dict(),
    }


def _train_epoch(
    run: _Run,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    target_groups: torch.Tensor | None,
    train_config: TrainConfig,
    device: torch.device,
    bar: tqdm,
) -> torch.Tensor:
    """One pass over the windows in a fresh batch order; returns the summed loss, still on the device. In a
    group each rank trains on its share of every batch, and the loss is summed over the ranks."""
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and train_config.bf16
        else contextlib.nullcontext()
    )
    lengths = (targets != 0).sum(dim=1).cpu()
    batches = epoch_batches(lengths, train_config.batch_size, run.shuffle, train_config.bucket_by_length)
    loss_sum = torch.zeros((), device=device)  # summed on device: no host sync per step
    for batch in batches:
        batch, share = distributed.shard(batch.to(device), targets, run.model.n_items, run.group)
        with autocast:
            groups = None if target_groups is None else target_groups[batch]
            loss = run.loss(inputs[batch], targets[batch], groups)
        if share is not None:
            loss = loss * share  # this rank's part of the batch's mean loss: the ranks' parts sum to it
        run.optimizer.zero_grad(set_to_none=True)
        (loss * run.group.world_size).backward()  # DDP averages gradients over the ranks; times W, they sum
        if train_config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), train_config.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        loss_sum += loss.detach().float()
        bar.update(1)
    return distributed.total(loss_sum, run.group)


def _end_epoch(
    run: _Run, record: dict, validate: Callable[[SASRec], float] | None, train_config: TrainConfig, started: float
) -> None:
    """Validate when due, keep the best weights, record the epoch and decide on early stopping."""
    epoch = record["epoch"]
    improved = validate is None
    if validate is not None and epoch % train_config.validate_every == 0:
        run.model.eval()
        metric = float(validate(run.model))
        run.model.train()
        record["val_ndcg@10"] = metric
        if metric > run.best_metric:
            run.best_metric, run.best_state, run.stale_validations = metric, _cpu_state(run.model), 0
            improved = True
        else:
            run.stale_validations += 1
    record["seconds"] = time.perf_counter() - started
    history = run.history
    history.epochs.append(record)
    if improved:
        history.best_epoch = epoch
        history.best_metric = None if validate is None else run.best_metric
        history.time_to_best_s = sum(r["seconds"] for r in history.epochs)
    history.stopped_early = validate is not None and run.stale_validations >= train_config.patience


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
    group: distributed.Group,
) -> tuple[SASRec, TrainHistory]:
    tie_timestamps = timestamps if train_config.shuffle_ties else None
    inputs_np, targets_np = _epoch_examples(train_sequences, tie_timestamps, model_config, train_config, 0)
    # Chosen once, so a window keeps its place (and its set-target groups) whatever order ties are drawn in.
    kept = purchase_windows(targets_np, n_items)
    if not kept.any():
        raise ValueError("no training window holds a purchase to predict")
    inputs_np, targets_np = inputs_np[kept], targets_np[kept]
    inputs = torch.from_numpy(inputs_np).to(device)  # (N, L)
    targets = torch.from_numpy(targets_np).to(device)  # (N, L)
    target_groups = None
    if train_config.set_targets and timestamps is not None:
        # Shuffling only permutes items inside a group, so the group of each position never changes.
        _, groups_np = make_training_examples(
            timestamp_groups(timestamps), model_config.max_length, train_config.windows_per_sequence
        )
        target_groups = torch.from_numpy(groups_np[kept]).to(device)  # (N, L)
    n_examples = len(inputs)
    steps_per_epoch = math.ceil(n_examples / train_config.batch_size)
    run = _start_run(model_config, train_config, n_items, item_text_embeddings, device, targets_np,
                     steps_per_epoch * train_config.epochs, group)
    fingerprint = _run_fingerprint(model_config, train_config, n_items, n_examples)
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if checkpoint_path is not None:
        _resume(run, checkpoint_path, fingerprint, device)

    bar = tqdm(
        total=max(0, train_config.epochs - run.start_epoch + 1) * steps_per_epoch,
        disable=not train_config.show_progress or run.history.stopped_early or not group.is_main,
        desc="sasrec",
        unit="step",
    )
    run.model.train()
    for epoch in range(run.start_epoch, train_config.epochs + 1):
        if run.history.stopped_early:
            break
        started = time.perf_counter()
        distributed.seed_epoch(train_config.seed, epoch, group)
        if tie_timestamps is not None:
            inputs_np, targets_np = _epoch_examples(train_sequences, tie_timestamps, model_config, train_config, epoch)
            inputs_np, targets_np = inputs_np[kept], targets_np[kept]
            inputs, targets = torch.from_numpy(inputs_np).to(device), torch.from_numpy(targets_np).to(device)
        loss_sum = _train_epoch(run, inputs, targets, target_groups, train_config, device, bar)
        record = {"epoch": epoch, "loss": loss_sum.item() / steps_per_epoch, "val_ndcg@10": None}
        _end_epoch(run, record, validate, train_config, started)
        validated = validate is not None and run.best_metric > float("-inf")
        bar.set_postfix(epoch=epoch, loss=f"{record['loss']:.4f}", val=f"{run.best_metric:.4f}" if validated else "-")
        if checkpoint_path is not None and group.is_main:
            _save_checkpoint(checkpoint_path, _checkpoint(run, fingerprint, epoch, device, validate is not None))
    bar.close()
    if validate is not None and run.best_metric > float("-inf"):
        run.model.load_state_dict(run.best_state)
    run.model.eval()
    return run.model, run.history


def _save_checkpoint(path: Path, state: dict) -> None:
    # Write then rename: a crash mid-write leaves the previous checkpoint intact.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    os.replace(partial, path)
