"""Data-parallel SASRec training: torch DistributedDataParallel over processes on one machine, or under torchrun.

Every rank holds all the training windows and draws the same batch order (the shuffle generator is seeded alike),
so each rank takes its share of every global batch (rows ``rank, rank + W, ...``) and the shares together are
exactly the batch one process would train on. A rank's mean loss is weighted by its share of the batch's scored
positions, times ``W`` to undo DDP's average over ranks, so the averaged gradient is the gradient of the whole
batch's mean loss, as in one process: the runs then differ by float rounding only (sums in another order).
Dropout and sampled negatives are drawn from each rank's own stream, a function of (seed, rank, epoch): with them
a run of N processes is an equally valid draw, not the same numbers.

Backends: NCCL when training on CUDA (one GPU per rank, ``cuda:LOCAL_RANK``), gloo on CPUs. Rank 0 alone validates
(and broadcasts the metric, so every rank takes the same early-stopping decision), writes checkpoints (and reads
them on a resume, sending them to the others) and shows progress. ``launch`` runs N local processes for callers
that are not under torchrun, the caller being rank 0; ``data_parallel`` makes ``train_sasrec`` and
``fit_then_refit`` launch when ``TrainConfig.processes`` asks.
"""

from __future__ import annotations

import functools
import inspect
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

LOOPBACK = "127.0.0.1"
WORKER_JOIN_S = 10  # after rank 0 fails: how long to wait for a worker's own error, which explains more


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes; the default is a process training alone."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index of the process on its machine: the GPU it trains on

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def available() -> bool:
    """Whether this build of torch has torch.distributed (some macOS and mobile builds do not)."""
    return dist.is_available()


def in_group() -> bool:
    """Whether this process already trains among others: in a process group, or started by torchrun
    (whose ``WORLD_SIZE`` says how many), so it must not launch processes of its own."""
    if not available():
        return False
    return dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    """This process's rank: in its process group, else as torchrun's ``RANK`` says, else 0."""
    if available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size(processes: int = 1) -> int:
    """How many processes a run with ``TrainConfig.processes = processes`` trains in from here: the group's size
    when this process is already in one (or torchrun's ``WORLD_SIZE``), else ``processes``."""
    if available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "0")) or processes


def device_for(name: str | None, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """``name``, or CUDA when available; a process of a group on CUDA takes the GPU of its local rank."""
    device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    if distributed and device.type == "cuda":
        return torch.device("cuda", local_rank)
    return device


def backend_for(device: torch.device) -> str:
    # NCCL reduces GPU tensors GPU to GPU and cannot reduce CPU ones; gloo is the CPU backend.
    return "nccl" if device.type == "cuda" else "gloo"


def join(device_name: str | None) -> tuple[Group, torch.device]:
    """This process's group and training device. A group torchrun describes (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) is initialised here and left open for the process's later
    runs (``fit_then_refit`` trains twice); without one, a group of one."""
    if available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = device_for(device_name, int(os.environ.get("LOCAL_RANK", "0")), distributed=True)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend_for(device), init_method="env://")
    if not available() or not dist.is_initialized():
        return Group(), device_for(device_name)
    own = dist.get_rank()
    group = Group(own, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", own)))
    return group, device_for(device_name, group.local_rank, distributed=True)


def shard(
    batch: torch.Tensor, targets: torch.Tensor, n_items: int, group: Group
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """This rank's windows of a global ``batch`` (indices into ``targets``) and its share of the batch's scored
    positions (None alone). ``SASRec.training_loss`` is a mean over the positions whose target is a purchase, so
    ``share * loss`` summed over the ranks is the batch's mean loss, however unequal the shards."""
    if not group.active:
        return batch, None
    batch_targets = targets[batch]  # (B, L)
    scored = ((batch_targets > 0) & (batch_targets <= n_items)).sum(dim=1)  # (B,) purchase targets per window
    # Strided, not contiguous: length bucketing sorts a batch, and strides give every rank alike long windows.
    mine = slice(group.rank, None, group.world_size)
    return batch[mine], scored[mine].sum() / scored.sum()


class _TrainingLoss(nn.Module):
    """SASRec's training loss as a forward pass: DDP synchronises the gradients of what its forward computes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, target_groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        if len(inputs) == 0:
            # A global batch smaller than the group leaves this rank nothing. A zero that reaches every parameter
            # keeps DDP's reduction complete; its share of the batch is 0 anyway.
            return sum(parameter.sum() for parameter in self.model.parameters()) * 0.0
        return self.model.training_loss(inputs, targets, target_groups)


def training_loss(model: nn.Module, group: Group, device: torch.device) -> Callable[..., torch.Tensor]:
    """``model.training_loss`` alone; in a group, the same behind DDP, whose backward averages gradients over ranks."""
    if not group.active:
        return model.training_loss
    # Buffers (the frozen text matrix, popularity counts) are built alike on every rank and DDP copies rank 0's at
    # the start; copying them again before every step would only cost time.
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(_TrainingLoss(model), device_ids=device_ids, forward_sync_buffers=False)


def total(value: torch.Tensor, group: Group) -> torch.Tensor:
    """``value`` summed over the ranks (in place), e.g. the ranks' shares of an epoch's losses."""
    if group.active:
        dist.all_reduce(value)
    return value


def seed_epoch(seed: int, epoch: int, group: Group) -> None:
    """In a group, seed this rank's dropout and negatives from (seed, rank, epoch): ranks draw different masks,
    and a resumed run draws what an uninterrupted one would have. Alone, the running stream is left as it is."""
    if group.active:
        torch.manual_seed(int(np.random.SeedSequence([seed, group.rank, epoch]).generate_state(1)[0]))


def validation(
    validate: Callable[[nn.Module], float] | None, group: Group, device: torch.device
) -> Callable[[nn.Module], float] | None:
    """``validate`` run by rank 0 only, its metric broadcast, so every rank keeps the same best weights and stops
    at the same epoch."""
    if validate is None or not group.active:
        return validate

    def shared(model: nn.Module) -> float:
        metric = float(validate(model)) if group.is_main else 0.0
        value = torch.tensor([metric], dtype=torch.float64, device=device)
        dist.broadcast(value, src=0)
        return float(value.item())

    return shared


def from_rank_zero(read: Callable[[], object], group: Group) -> object:
    """What ``read()`` returns on rank 0, on every rank (pickled across; rank 0 alone calls ``read``)."""
    if not group.active:
        return read()
    box = [read() if group.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def validated_on_rank_zero(model: nn.Module) -> float:
    """What ranks other than 0 get for ``validate``: it says that there is validation, whose metric rank 0 sends."""
    raise RuntimeError("validation runs on rank 0 only; other ranks receive its metric")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def data_parallel(train: Callable) -> Callable:
    """``train``, whose arguments include ``train_config`` (a ``TrainConfig``) and ``validate``, run by ``launch`` in
    ``train_config.processes`` local processes when that is above 1 and this process is not already in a group."""
    signature = inspect.signature(train)

    @functools.wraps(train)
    def launched(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        config = bound.arguments["train_config"]
        if config.processes <= 1 or in_group():
            return train(*args, **kwargs)
        validate = bound.arguments.pop("validate")
        # The workers call ``launched`` too (pickled by name), and being in the group, train.
        return launch(config.processes, launched, (), dict(bound.arguments), validate, config.device)

    return launched


def launch(processes: int, train: Callable, args: tuple, kwargs: dict, validate: Callable | None,
           device_name: str | None):
    """``train(*args, validate=validate, **kwargs)`` in a group of ``processes`` on this machine, and rank 0's result.

    This process is rank 0, so ``validate`` may be any callable (a closure over the validation rows) and the
    trained model needs no copying back; ranks 1.. are spawned (safe after CUDA is initialised, unlike fork) and get
    ``train``, ``args`` and ``kwargs`` pickled. A worker's failure is raised here.
    """
    if not available():
        raise RuntimeError("torch.distributed is not available in this build of torch: train with processes=1")
    device = device_for(device_name, distributed=True)
    backend = backend_for(device)
    if backend == "nccl" and processes > torch.cuda.device_count():
        raise ValueError(f"{processes} processes need as many GPUs; {torch.cuda.device_count()} are visible")
    url = f"tcp://{LOOPBACK}:{free_port()}"
    stand_in = None if validate is None else validated_on_rank_zero
    workers = torch.multiprocessing.start_processes(
        _worker, args=(processes, url, backend, train, args, kwargs, stand_in), nprocs=processes - 1,
        join=False, start_method="spawn",
    )
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method=url, rank=0, world_size=processes)
        try:
            result = train(*args, validate=validate, **kwargs)
        finally:
            dist.destroy_process_group()
    except BaseException:
        try:
            workers.join(timeout=WORKER_JOIN_S)  # raises the error of a worker that failed first
        finally:
            for process in workers.processes:
                if process.is_alive():
                    process.terminate()
        raise
    while not workers.join():
        pass
    return result


def _worker(index: int, processes: int, url: str, backend: str, train: Callable, args: tuple, kwargs: dict,
            validate: Callable | None) -> None:
    rank = index + 1  # the launching process is rank 0
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=url, rank=rank, world_size=processes)
    try:
        train(*args, validate=validate, **kwargs)
    finally:
        dist.destroy_process_group()
