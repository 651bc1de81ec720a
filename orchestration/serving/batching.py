"""Concurrent requests ranked together: one call to the two-stage recommender serves every request waiting.

A ranking call costs a fixed overhead (the sources' calls, LightGBM's set-up, numpy's per-call costs) plus a
little per row, so while one call runs, the requests arriving queue up and the next call takes them all: no timer,
the batch is whatever waited. Every row is ranked exactly as alone: the sources are batch-invariant
(``SASRec.score_each``), each request's events are its own (relabelled per row, so two requests of one customer
never mix), and features and LightGBM read one row at a time.

Requests without events (anonymous sessions) take the blank features whatever the cut-off, so they are ranked
together as arrays (``TwoStageRecommender.rank_blank``); requests with events (customers) are ranked as arrays too,
one call per cut-off, their features computed from their own events (``TwoStageRecommender.rank_known``). Either
way the frame of candidates and features is made only if a caller asks for it (``Ranked.frame``,
``Ranked.features_of``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from recmodels.event_table import EventTable
from recmodels.ranking.behaviour import no_behaviour
from recmodels.recommender import TwoStageRecommender, blank_frame, in_history, no_purchases
from recmodels.sequences import decode

Item = TypeVar("Item")
Result = TypeVar("Result")
MAX_BATCH = 64  # requests per ranking call at most: bounds the wait of the last one


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Torch, BLAS and OpenMP on one thread while the context lasts, as ``recsys serve`` ranks: the same arithmetic
    as the API's, and a one-customer forward pass does not keep a second thread spinning (on a busy 2-core
    machine that cost 4 to 5 times the CPU per customer)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


class _Slot(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Item):
        self.item, self.result, self.error, self.done = item, None, None, False


class MicroBatcher(Generic[Item, Result]):
    """``submit`` from many threads; ``run`` (a list of items -> their results, in order) is called by one thread at
    a time with every item queued. A failing batch is run again one item at a time, so an error reaches only the
    request that caused it."""

    def __init__(self, run: Callable[[list[Item]], list[Result]], max_batch: int = MAX_BATCH):
        self._run = run
        self.max_batch = max_batch
        self._queue: list[_Slot] = []
        self._queued = threading.Lock()  # guards the queue, held for a moment only
        self._running = threading.Lock()  # held while a batch runs: one ranking call at a time

    def submit(self, item: Item) -> Result:
        slot = _Slot(item)
        with self._queued:
            self._queue.append(slot)
        while not slot.done:
            with self._running:
                if slot.done:  # an earlier caller's batch took it
                    break
                with self._queued:
                    batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                self._settle(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _settle(self, batch: list[_Slot]) -> None:
        try:
            for slot, result in zip(batch, self._run([slot.item for slot in batch]), strict=True):
                slot.result = result
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                for slot in batch:
                    self._settle([slot])
        finally:
            for slot in batch:
                slot.done = True


@dataclass(frozen=True)
class RankRequest:
    """One row to rank: a history, the purchases and behaviour its features read (its own only), the cut-off."""

    history: np.ndarray  # the models' history (tokens where they read behaviour)
    events: pd.DataFrame  # purchase_events rows of this request's user
    behaviour: pd.DataFrame  # behaviour_events rows of this request's user
    cutoff: pd.Timestamp  # features read events before it
    exclude_history: bool = False  # leave the history's own items out


class CallFeatures:
    """A ranking call's candidates with their features as one frame, made when first asked for: rows ranked as
    arrays (``TwoStageRecommender.rank_blank``) need none to be answered."""

    def __init__(self, make: Callable[[], pd.DataFrame]):
        self._make: Callable[[], pd.DataFrame] | None = make
        self._frame: pd.DataFrame | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, frame: pd.DataFrame) -> CallFeatures:
        """Features already made."""
        return cls(lambda: frame)

    @property
    def frame(self) -> pd.DataFrame:
        with self._lock:
            if self._frame is None:
                self._frame, self._make = self._make(), None
            return self._frame


@dataclass(frozen=True)
class Ranked:
    """One request's candidates, best first (score, then the lower id): their ids and scores, and where their
    features are in the ranking call's frame, so that no per-request frame is built unless asked for."""

    items: np.ndarray  # internal ids
    scores: np.ndarray
    features: CallFeatures  # the whole call's candidates with features
    positions: np.ndarray  # this request's rows of ``features.frame``, best first

    def frame(self) -> pd.DataFrame:
        """The candidates with their features, best first. ``features_as_of`` (what a leakage check reads) is left
        out: it holds the items' last events among the other rows' too, the one column that tells a batch from a
        row alone."""
        return self.features.frame.iloc[self.positions].drop(columns=["row", "features_as_of"]).reset_index(drop=True)

    def features_of(self, item: int) -> tuple[int, pd.Series] | None:
        """(1-based rank, feature row) of ``item``; None when it is no candidate."""
        hit = np.flatnonzero(self.items == item)
        return None if not len(hit) else (int(hit[0]) + 1, self.features.frame.iloc[self.positions[hit[0]]])


_NO_PURCHASES, _NO_BEHAVIOUR = EventTable.of(no_purchases()), EventTable.of(no_behaviour())


def _own(tables: list[pd.DataFrame | EventTable], labels: np.ndarray, empty: EventTable) -> EventTable:
    """The tables as one, each under its row's label, in the columns of ``empty``."""
    labelled = [EventTable.of(table).assign(user_key=label) for table, label in zip(tables, labels) if len(table)]
    return EventTable.concat(labelled, empty)


def is_blank(recommender: TwoStageRecommender, request: RankRequest) -> bool:
    """Whether ``rank`` takes the request's features from ``blank_features``: its user has no event it reads."""
    return not len(request.events) and not (recommender.config.behaviour and len(request.behaviour))


def _seen(requests: list[RankRequest], n_items: int) -> list[np.ndarray]:
    """Per request, the items its answer leaves out: everything the history holds, whatever was done to it."""
    return [decode(r.history, n_items)[0] if r.exclude_history else np.array([], np.int64) for r in requests]


def _answers(rows: np.ndarray, items: np.ndarray, score: np.ndarray, kept: np.ndarray, n_rows: int,
             features: CallFeatures) -> list[Ranked]:
    """Each of ``n_rows`` rows' kept candidates, best first."""
    order = np.flatnonzero(kept)[np.lexsort((items[kept], -score[kept], rows[kept]))]  # by row, best first
    bounds = np.searchsorted(rows[order], np.arange(n_rows + 1))
    return [Ranked(items[positions], score[positions], features, positions)
            for positions in (order[bounds[row]:bounds[row + 1]] for row in range(n_rows))]


def rank_requests(recommender: TwoStageRecommender, requests: list[RankRequest], n_items: int,
                  item_features: pd.DataFrame, blank_features: pd.DataFrame) -> list[Ranked]:
    """Every candidate of each request, ranked: one ``rank_blank`` call for the requests without events (sessions
    of items: their features do not depend on the cut-off), one ranking call per distinct cut-off for the rest."""
    answers: list[Ranked | None] = [None] * len(requests)
    blank = [index for index, request in enumerate(requests) if is_blank(recommender, request)]
    if blank:
        chosen = [requests[i] for i in blank]
        candidates, score = recommender.rank_blank([r.history for r in chosen], blank_features, _seen(chosen, n_items))
        features = CallFeatures(lambda: blank_frame(candidates, blank_features, score))
        ranked = _answers(candidates.rows, candidates.items, score, np.ones(len(score), dtype=bool), len(chosen),
                          features)
        for index, answer in zip(blank, ranked):
            answers[index] = answer
    by_cutoff: dict[pd.Timestamp, list[int]] = {}
    for index, request in enumerate(requests):
        if answers[index] is None:
            by_cutoff.setdefault(request.cutoff, []).append(index)
    for cutoff, members in by_cutoff.items():
        chosen = [requests[i] for i in members]
        for index, answer in zip(members, _rank_known(recommender, chosen, cutoff, n_items, item_features,
                                                      blank_features)):
            answers[index] = answer
    return answers


def _rank_known(recommender: TwoStageRecommender, chosen: list[RankRequest], cutoff: pd.Timestamp, n_items: int,
                item_features: pd.DataFrame, blank_features: pd.DataFrame) -> list[Ranked]:
    """Requests with events at one cut-off, ranked as arrays (``rank_known``) or, where that path does not
    reproduce ``rank``, by ``rank``."""
    labels = np.array([str(row) for row in range(len(chosen))], dtype=object)
    histories = [request.history for request in chosen]
    events = _own([r.events for r in chosen], labels, _NO_PURCHASES)
    behaviour = _own([r.behaviour for r in chosen], labels, _NO_BEHAVIOUR)
    seen = _seen(chosen, n_items) if any(r.exclude_history for r in chosen) else None
    known = recommender.rank_known(histories, labels, events, cutoff, item_features, behaviour, seen)
    if known is not None:
        candidates, score, frame = known
        return _answers(candidates.rows, candidates.items, score, np.ones(len(score), dtype=bool), len(chosen),
                        CallFeatures(frame))
    ranked = recommender.rank(histories, labels, events.frame(), cutoff, item_features=item_features,
                              blank_features=blank_features, behaviour=behaviour.frame())
    rows, items = ranked["row"].to_numpy(np.int64), ranked["item"].to_numpy(np.int64)
    kept = ~in_history(rows, items, seen) if seen is not None else np.ones(len(ranked), dtype=bool)
    return _answers(rows, items, ranked["score"].to_numpy(np.float64), kept, len(chosen), CallFeatures.of(ranked))
