"""Data-parallel SASRec: two CPU processes (gloo on loopback) train as one process does on the same global batches.

Exactly equal numbers are not to be had: DDP averages the ranks' gradients where one process sums the positions
of the whole batch at once, and float32 sums taken in another order round differently (about 1e-7 relative).
Adam divides by each gradient's running scale, so where a gradient is near zero a rounding difference can move a
weight by a fraction of the learning rate. Measured on these runs: losses agree to 1e-7 relative, weights to 6e-5.
The tolerances, 1e-5 relative on losses and 1e-3 absolute on weights, sit between that and a real fault: weighting
each rank's loss by its windows instead of its scored positions misses by 1e-4 to 1e-3 on the losses and 1e-2 on
the weights. Batches are not bucketed by length here, so the ranks' shards score unequal numbers of positions;
dropout is 0 and the loss a full softmax, so no random draw differs between the runs.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from recmodels import distributed
from recmodels.sasrec import SASRecConfig
from recmodels.training import CHECKPOINT_FILE, TrainConfig, train_sasrec

pytestmark = pytest.mark.skipif(
    not distributed.available(), reason="torch.distributed is not available in this build of torch"
)

N_ITEMS = 20
MODEL = SASRecConfig(hidden_size=16, num_layers=1, num_heads=2, dropout=0.0, max_length=8)
BASE = TrainConfig(lr=1e-2, warmup_steps=3, bucket_by_length=False, show_progress=False, num_threads=1)
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-3


def _sequences(n_sequences: int = 41, seed: int = 0) -> list[np.ndarray]:
    # Lengths from 2 to 11: windows score unequal numbers of positions, so the ranks' shards do too.
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, N_ITEMS, size=n_sequences)
    return [(start + np.arange(rng.integers(2, 12))) % N_ITEMS + 1 for start in starts]


def _next_item_hits(model) -> float:
    histories = [(start + np.arange(3)) % N_ITEMS + 1 for start in range(N_ITEMS)]
    expected = np.array([history[-1] % N_ITEMS + 1 for history in histories])
    return float(np.mean(model.recommend(histories, k=1)[:, 0] == expected))


def _losses(history) -> np.ndarray:
    return np.array([record["loss"] for record in history.epochs])


def _assert_weights_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, weights in a.items():
        torch.testing.assert_close(weights, b[name], rtol=0, atol=WEIGHT_ATOL, msg=name)


def test_two_processes_follow_the_loss_trajectory_of_one():
    # One global batch per epoch (41 windows, batch 64), so the epoch losses are the per-step trajectory; the
    # validation callback is a closure, which only the launching process (rank 0) runs.
    config = replace(BASE, epochs=6, batch_size=64, patience=6)
    sequences = _sequences()
    alone, alone_history = train_sasrec(sequences, N_ITEMS, MODEL, config, validate=_next_item_hits)
    shared, shared_history = train_sasrec(sequences, N_ITEMS, MODEL, replace(config, processes=2),
                                          validate=lambda model: _next_item_hits(model))
    np.testing.assert_allclose(_losses(shared_history), _losses(alone_history), rtol=LOSS_RTOL)
    assert _losses(alone_history)[-1] < _losses(alone_history)[0]  # it trained
    assert [r["val_ndcg@10"] for r in shared_history.epochs] == [r["val_ndcg@10"] for r in alone_history.epochs]
    assert shared_history.best_epoch == alone_history.best_epoch
    _assert_weights_close(shared.state_dict(), alone.state_dict())


def _torchrun_rank(rank: int, port: int, folder: str) -> None:
    """One process as torchrun starts it: the group comes from the environment alone."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": distributed.LOOPBACK, "MASTER_PORT": str(port)})
    # Each rank is given a checkpoint folder of its own, so the test sees which ranks write; the run is cut after
    # one epoch and resumed, and rank 1, whose folder stays empty, resumes from what rank 0 sends it.
    config = replace(BASE, epochs=2, batch_size=8)
    train_sasrec(_sequences(), N_ITEMS, MODEL, replace(config, epochs=1), checkpoint_dir=f"{folder}/rank{rank}")
    model, history = train_sasrec(_sequences(), N_ITEMS, MODEL, config, checkpoint_dir=f"{folder}/rank{rank}")
    torch.save({"state": model.state_dict(), "losses": _losses(history)}, f"{folder}/result{rank}.pt")


def test_under_torchrun_rank_zero_alone_writes_the_ranks_agree_and_resume(tmp_path):
    # 41 windows in batches of 8: each epoch ends with a batch of one, which leaves rank 1 an empty shard.
    torch.multiprocessing.spawn(_torchrun_rank, args=(distributed.free_port(), str(tmp_path)), nprocs=2)
    assert (tmp_path / "rank0" / CHECKPOINT_FILE).exists()
    assert not (tmp_path / "rank1").exists()
    results = [torch.load(tmp_path / f"result{rank}.pt", weights_only=False) for rank in (0, 1)]
    # DDP hands both ranks the same averaged gradients, so their weights are the same to the bit.
    assert all(torch.equal(results[0]["state"][name], results[1]["state"][name]) for name in results[0]["state"])
    alone, alone_history = train_sasrec(_sequences(), N_ITEMS, MODEL, replace(BASE, epochs=2, batch_size=8))
    np.testing.assert_allclose(results[0]["losses"], _losses(alone_history), rtol=LOSS_RTOL)
    _assert_weights_close(results[0]["state"], alone.state_dict())


def test_shards_cover_the_batch_and_shares_sum_to_one():
    targets = torch.tensor([[0, 3, 4], [0, 0, 5], [1, 2, 3], [0, 0, 0], [0, 9, 25]])  # 25 > n_items: not scored
    batch = torch.tensor([4, 0, 2, 1, 3])
    groups = [distributed.Group(rank, 2) for rank in (0, 1)]
    shards = [distributed.shard(batch, targets, 20, group) for group in groups]
    assert sorted(torch.cat([rows for rows, _ in shards]).tolist()) == sorted(batch.tolist())
    # Scored positions: rank 0 gets windows 4, 2, 3 (1 + 3 + 0), rank 1 windows 0, 1 (2 + 1), of 7.
    assert [float(share) for _, share in shards] == pytest.approx([4 / 7, 3 / 7])
    rows, share = distributed.shard(batch, targets, 20, distributed.Group())
    assert rows is batch and share is None


def test_nccl_on_cuda_and_gloo_on_cpu():
    # Only the choice is tested here: NCCL itself needs GPUs.
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.device_for("cuda", local_rank=1, distributed=True) == torch.device("cuda", 1)
    assert distributed.device_for("cpu", local_rank=1, distributed=True) == torch.device("cpu")
