"""The LambdaRank ensemble grown on a Dask cluster with ``lightgbm.dask`` (data-parallel LightGBM).

Each model of the ensemble trains on the same rows, held-out split and params as ``LambdaRanker.fit`` gives it;
only the growing moves to the cluster. The result is an ordinary ``LambdaRanker`` (boosters saved as LightGBM text),
so scoring, saving and serving do not know where it was trained.

What differs from a local fit, all forced by how distributed LightGBM works:

* Rows are split into partitions by whole query group, never inside one: LambdaRank's gradients compare the items
  of one query, so each worker must hold all of a query's candidates.
* ``lightgbm.dask`` has no early stopping of its own: it gives each worker a share of an eval set, and workers
  judging different users could stop at different rounds. Instead every worker gets all the held-out users with a
  callback (``HeldOutStopping``) that scores them as LightGBM's NDCG does and stops as ``lgb.early_stopping`` does;
  the trees being the same on every worker, so is the decision (the workers must run the same environment).
* The trees differ slightly: each worker finds the bins of some features from its own rows only, and histograms
  are summed across workers. lightgbm.dask ranks the workers in the order the scheduler reports where the data is,
  which can change from run to run, so a distributed fit is repeatable up to that order (the partitions themselves
  are seeded).

dask is imported only when a cluster is asked for, so the rest of ``recmodels`` works without it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import lightgbm as lgb
import numpy as np
import pandas as pd

from recmodels.ranking.ranker import LambdaRanker, RankerConfig


@dataclass(frozen=True)
class DaskSettings:
    """Where a distributed fit runs; the defaults (no scheduler, no workers) mean a local fit."""

    scheduler: str | None = None  # address of a running scheduler, e.g. "tcp://10.0.0.5:8786"; wins over workers
    workers: int = 0  # else a LocalCluster of this many worker processes for the one fit (0: no cluster)
    threads_per_worker: int = 1  # LightGBM threads per LocalCluster worker
    processes: bool = True  # LocalCluster workers as processes (False: threads of this one, quicker to start)

    @property
    def enabled(self) -> bool:
        return bool(self.scheduler) or self.workers > 0

    @property
    def where(self) -> str:
        """Where a fit with these settings runs, in words (for logs and metadata)."""
        if self.scheduler:
            return f"Dask cluster at {self.scheduler}"
        return f"local Dask cluster of {self.workers} workers" if self.workers > 0 else "this process"


def partition_groups(sizes: np.ndarray, n_partitions: int, seed: int) -> np.ndarray:
    """(n_groups,) partition of each group: groups in a seeded random order, each to the partition with the fewest
    rows so far (ties to the lower partition), so partitions hold about equal rows and no group is split."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1, got {n_partitions}")
    n_partitions = min(n_partitions, len(sizes))  # an empty partition would leave a worker with nothing to train
    filled = np.zeros(n_partitions, dtype=np.int64)
    partition = np.empty(len(sizes), dtype=np.int64)
    for group in np.random.default_rng(seed).permutation(len(sizes)):
        partition[group] = int(np.argmin(filled))
        filled[partition[group]] += sizes[group]
    return partition


def grouped_ndcg(scores: np.ndarray, labels: np.ndarray, sizes: np.ndarray, k: int) -> float:
    """Mean NDCG@k over the groups (rows contiguous, ``sizes`` each) as LightGBM's ``ndcg`` metric computes it:
    gain 2^label - 1, discount 1 / log2(position + 1), score ties in row order, a group without gain counts 1."""
    padded, labels_padded = _padded(sizes, labels)
    return float(_padded_ndcg(np.where(padded >= 0, scores[padded], -np.inf), labels_padded, k).mean())


def _padded(sizes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G, longest group) row index per group position (-1 past the group's end) and the labels there (0)."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    position = np.arange(int(np.max(sizes)))
    padded = np.where(position < sizes[:, None], starts[:, None] + position, -1)  # (G, L)
    return padded, np.where(padded >= 0, labels[padded], 0.0)


def _padded_ndcg(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(G,) NDCG@k per row of (G, L) scores (-inf past a group's end) and labels."""
    k = min(k, scores.shape[1])
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    gain = 2.0 ** labels - 1.0
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(gain, top, axis=1) * discount).sum(axis=1)
    ideal = (-np.sort(-gain, axis=1)[:, :k] * discount).sum(axis=1)
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 1.0)


class HeldOutStopping:
    """A LightGBM callback: ``lgb.early_stopping(patience)`` on held-out groups it scores itself, for training
    without an eval set. Given the same held-out rows on every worker of a data-parallel fit, each worker holds the
    same trees and so takes the same decision at the same round, as early stopping across workers must (with an
    eval set, lightgbm.dask gives each worker a share of it, and workers stopping at different rounds would leave
    the others waiting)."""

    order = 30  # where lgb.early_stopping runs among the callbacks
    before_iteration = False

    def __init__(self, valid: tuple, k: int, patience: int):
        x, labels, sizes = valid
        self.x, self.k, self.patience = x, k, patience
        self.padded, self.labels_padded = _padded(np.asarray(sizes), np.asarray(labels, dtype=np.float64))

    def __call__(self, env) -> None:
        if env.iteration == env.begin_iteration:  # a fresh fit, should the callback be used again
            self.raw = np.zeros(len(self.x))
            self.best_iteration, self.best_ndcg = -1, -np.inf  # 0-based, as LightGBM counts in callbacks
        # One tree at a time: the sum of per-tree outputs is the model's raw score after this many rounds.
        self.raw += env.model.predict(self.x, start_iteration=env.iteration, num_iteration=1, raw_score=True)
        ndcg = float(_padded_ndcg(np.where(self.padded >= 0, self.raw[self.padded], -np.inf), self.labels_padded,
                                  self.k).mean())
        if ndcg > self.best_ndcg:
            self.best_iteration, self.best_ndcg = env.iteration, ndcg
        if env.iteration - self.best_iteration >= self.patience or env.iteration == env.end_iteration - 1:
            best = [("held_out", f"ndcg@{self.k}", self.best_ndcg, True)]
            raise lgb.callback.EarlyStopException(self.best_iteration, best)


def _dask_params(config: RankerConfig, params: dict) -> dict:
    """``params`` for ``DaskLGBMRanker``: each worker sets its own thread count, and no eval set is passed, so
    the metric settings would only be ignored with a warning."""
    dropped = {"num_threads", "metric", "eval_at"}
    return {"n_estimators": config.n_estimators, **{k: v for k, v in params.items() if k not in dropped}}


def _placed_parts(client, x: np.ndarray, labels: np.ndarray, sizes: np.ndarray, seed: int) -> tuple:
    """(X, y, group) dask arrays, one partition of whole groups per worker, partition i held by the i-th worker by
    address. Left to the scheduler, two partitions could land on one worker and leave another idle."""
    import dask.array as da

    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    part_of_group = partition_groups(sizes, max(len(workers), 1), seed)
    part_of_row = np.repeat(part_of_group, sizes)
    pieces: tuple[list, list, list] = ([], [], [])
    for part in range(int(part_of_group.max()) + 1):
        # Row and group order kept inside a partition, so each group's rows stay contiguous.
        chunk = (x[part_of_row == part], labels[part_of_row == part], sizes[part_of_group == part])
        placed = client.persist([da.from_array(array, chunks=array.shape) for array in chunk], workers=[workers[part]])
        for piece, array in zip(pieces, placed):
            piece.append(array)
    return tuple(da.concatenate(piece) for piece in pieces)


def _train_member(
    client, config: RankerConfig, feature_names: list[str], params: dict, train: tuple, valid: tuple | None
) -> tuple[lgb.Booster, int, float | None]:
    """One model of the ensemble, grown on the cluster: a ``MemberTrainer`` for ``LambdaRanker.fit``."""
    from lightgbm.dask import DaskLGBMRanker

    x, labels, group = _placed_parts(client, *train, seed=params["seed"])
    model = DaskLGBMRanker(client=client, **_dask_params(config, params))
    # Every worker gets all the held-out rows with the callback (they are the smaller share of the rows).
    stopping = [] if valid is None else [HeldOutStopping(valid, config.eval_at, config.early_stopping_rounds)]
    with warnings.catch_warnings():
        # lightgbm.dask gives each worker its own thread count and warns that the wrapper's n_jobs default (never
        # set here) is ignored.
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
        model.fit(x, labels, group=group, feature_name=list(feature_names), callbacks=stopping)
    # A fresh booster from the model's text: what is kept is exactly what save/load round-trips.
    booster = lgb.Booster(model_str=model.booster_.model_to_string())
    if valid is None:
        return booster, booster.current_iteration(), None
    return booster, int(model.best_iteration_), float(model.best_score_["held_out"][f"ndcg@{config.eval_at}"])


@contextmanager
def dask_client(settings: DaskSettings) -> Iterator:
    """A ``distributed.Client`` on ``settings.scheduler``, or on a LocalCluster started for it; both are closed
    when the block ends, by an error too."""
    from distributed import Client, LocalCluster

    if not settings.enabled:
        raise ValueError("DaskSettings names neither a scheduler nor a number of workers")
    cluster = None
    try:
        if not settings.scheduler:
            cluster = LocalCluster(
                n_workers=settings.workers,
                threads_per_worker=settings.threads_per_worker,
                processes=settings.processes,
                dashboard_address=":0",  # any free port: a second cluster on this machine must not fail on 8787
            )
        with Client(settings.scheduler or cluster) as client:
            yield client
    finally:
        if cluster is not None:
            cluster.close()


def fit_ranker(
    config: RankerConfig,
    features: pd.DataFrame,
    labels: np.ndarray,
    rows: np.ndarray,
    feature_names: list[str],
    cluster: DaskSettings | None = None,
) -> LambdaRanker:
    """``LambdaRanker(config).fit(...)``, on the Dask cluster ``cluster`` describes when it names one."""
    if cluster is None or not cluster.enabled:
        return LambdaRanker(config).fit(features, labels, rows, feature_names)
    with dask_client(cluster) as client:
        trainer = partial(_train_member, client, config, list(feature_names))
        return LambdaRanker(config).fit(features, labels, rows, feature_names, trainer=trainer)
