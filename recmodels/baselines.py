"""Non-neural baselines that any sequential model has to beat, scored over the full catalogue.

Each baseline has ``fit(train, n_items, ...) -> self`` on training sequences of internal ids and
``score(histories) -> (B, n_items + 1) float32`` with column 0 (PAD) at -inf, so all of them plug into
``recmodels.metrics.evaluate``. Sparse algebra (scipy) keeps them fast at Online Retail scale and beyond.

Sequences may hold views, carts and favourites as tokens (``recmodels.sequences.encode``). A baseline with a
``behaviour_weight`` counts each such event as that fraction of a purchase (0: purchases only, the default, chosen
on validation by ``pick_options``); the others read the purchases.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recmodels.history_weights import counted_events, history_weights
from recmodels.sequences import PAD, holds_behaviour
from recmodels.similarity import unit_rows


def _counts(sequences: list[np.ndarray], n_items: int, behaviour_weight: float = 0.0) -> np.ndarray:
    """(n_items + 1,) weighted event count per item over all sequences (PAD's count is 0)."""
    if not sequences:
        return np.zeros(n_items + 1)
    items, weights = counted_events(np.concatenate(sequences), n_items, behaviour_weight)
    counts = np.bincount(items, weights=weights, minlength=n_items + 1).astype(np.float64)
    counts[PAD] = 0.0
    return counts


def _popularity_rank(counts: np.ndarray, *then: np.ndarray) -> np.ndarray:
    """(n_items + 1,) scores in [0, 1): more events -> higher; equal counts are ordered by the ``then``
    arrays (higher first, in turn), and finally the lower id ranks higher.

    Exact float32 values that differ for every item, used to break ties and to order items a baseline has no
    opinion about, so every baseline returns a full ranking.
    """
    n = len(counts)
    keys = (np.arange(n), *(-np.asarray(t) for t in reversed(then)), -np.asarray(counts))
    order = np.lexsort(keys)  # best first
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(n)
    return ((n - 1 - rank) / n).astype(np.float32)


def _finish(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float32)
    scores[:, PAD] = -np.inf
    return scores


@dataclass
class MostPopular:
    """Every history gets the same ranking: items by training event count."""

    behaviour_weight: float = 0.0  # a view, cart or favourite counts as this fraction of a purchase
    n_items: int = field(default=0, init=False)  # set by fit
    scores_: np.ndarray = field(default=None, init=False, repr=False)  # (n_items + 1,) popularity scores

    def fit(self, train: list[np.ndarray], n_items: int) -> MostPopular:
        self.n_items = n_items
        self.scores_ = _popularity_rank(_counts(train, n_items, self.behaviour_weight),
                                        _counts(train, n_items))
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        return _finish(np.tile(self.scores_, (len(histories), 1)))


@dataclass
class RecentPopular:
    """Popularity over recent training events only, which tracks seasonality (Christmas stock in November).

    Sequences carry no times, so "recent" is either the last ``fraction`` of training events in time (when
    ``fit`` gets the training timestamps, aligned with ``train``) or, without them, the last ``last_n`` events
    of each sequence. Global popularity orders items with equal recent counts.
    """

    fraction: float = 0.1  # share of training events, latest first, that counts as recent (with timestamps)
    last_n: int = 5  # events per sequence that count as recent, without timestamps
    behaviour_weight: float = 0.0  # a view, cart or favourite counts as this fraction of a purchase
    n_items: int = field(default=0, init=False)  # set by fit
    scores_: np.ndarray = field(default=None, init=False, repr=False)  # (n_items + 1,) scores

    def fit(
        self, train: list[np.ndarray], n_items: int, timestamps: list[np.ndarray] | None = None
    ) -> RecentPopular:
        self.n_items = n_items
        if timestamps is not None:
            stamps = [np.asarray(t, dtype="datetime64[ns]") for t in timestamps]
            times = np.sort(np.concatenate(stamps)) if stamps else np.array([], dtype="datetime64[ns]")
            n_recent = max(1, math.ceil(self.fraction * len(times))) if len(times) else 0
            # Events tied with the first recent one count as recent too.
            since = times[len(times) - n_recent] if n_recent else None
            recent = [s[t >= since] for s, t in zip(train, stamps)] if n_recent else []
        else:
            recent = [s[-self.last_n :] for s in train]
        # Recent counts first; overall popularity only reorders equal recent counts.
        self.scores_ = _popularity_rank(_counts(recent, n_items, self.behaviour_weight),
                                        _counts(train, n_items, self.behaviour_weight))
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        return _finish(np.tile(self.scores_, (len(histories), 1)))


@dataclass
class BuyAgain:
    """Recommends the history's own items, most bought (recency-weighted) first, then everything else by
    popularity: a strong baseline wherever customers re-order.

    An item's weight is the sum over its occurrences of ``decay ** age`` (age 0 = most recent event), so with
    decay 1 it is the plain count and with decay < 1 recent purchases count more.
    """

    decay: float = 0.9  # weight ratio between an event and the one after it
    n_items: int = field(default=0, init=False)  # set by fit
    popularity_: np.ndarray = field(default=None, init=False, repr=False)  # (n_items + 1,) ranks in [0, 1)

    def fit(self, train: list[np.ndarray], n_items: int) -> BuyAgain:
        self.n_items = n_items
        self.popularity_ = _popularity_rank(_counts(train, n_items))
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        scores = np.tile(self.popularity_, (len(histories), 1))  # (B, n_items + 1), all below 1
        weights = history_weights(histories, self.n_items, self.decay)
        if len(weights.items):
            # Weighted sums can differ by less than float32 resolves, so history items are ranked in float64
            # (weight, then popularity; worst first per row) and get scores 1, 2, ... above every other item.
            order = np.lexsort((self.popularity_[weights.items], weights.weights, weights.rows))
            rows, columns = weights.rows[order], weights.items[order]
            first_of_row = np.searchsorted(rows, rows, side="left")
            scores[rows, columns] = 1.0 + np.arange(len(rows)) - first_of_row
        return _finish(scores)


@dataclass
class ItemKNN:
    """Item-to-item collaborative filtering: items bought in the same sequences are similar.

    Similarity is the cosine between items' sequence-incidence vectors: sim(i, j) = c(i, j) / (sqrt(n_i n_j)
    + shrink), with c the number of sequences holding both (within ``window`` positions of each other, when
    set) and n_i the number of sequences holding i. Each item keeps its ``neighbours`` most similar items. A
    history scores item j by sum over history items i of w_i * sim(i, j), w_i the decayed history weight;
    items no history item reaches are ordered by popularity below all reached ones.
    """

    neighbours: int = 100  # similar items kept per item (the rest are set to 0)
    # A view, cart or favourite counts as this fraction of a purchase, in the co-occurrences and in a history.
    behaviour_weight: float = 0.0
    decay: float = 1.0  # history weight ratio between an event and the one after it (1 = no recency)
    window: int | None = None  # co-occurrence only within this many positions (None = whole sequence)
    shrink: float = 0.0  # added to the cosine denominator, damping similarities of rare items
    n_items: int = field(default=0, init=False)  # set by fit
    similarity_: sp.csr_matrix = field(
        default=None, init=False, repr=False
    )  # (n+1, n+1), row i -> neighbours
    popularity_: np.ndarray = field(default=None, init=False, repr=False)  # (n_items + 1,) ranks in [0, 1)

    def _incidence(self, train: list[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
        """(sequences, n+1) each sequence's weight of each item: its largest event weight there, so a sequence
        counts once however often it holds the item, and a purchase outweighs a view of the same item."""
        lengths = np.array([len(items) for items, _ in train], dtype=np.int64)
        rows = np.repeat(np.arange(len(train)), lengths)
        columns = np.concatenate([items for items, _ in train]) if len(rows) else rows
        weights = np.concatenate([w for _, w in train]) if len(rows) else np.array([], dtype=np.float64)
        order = np.lexsort((-weights, columns, rows))  # heaviest first within each (sequence, item)
        rows, columns, weights = rows[order], columns[order], weights[order]
        first = np.r_[True, (rows[1:] != rows[:-1]) | (columns[1:] != columns[:-1])] if len(rows) else rows.astype(bool)
        return sp.csr_matrix((weights[first], (rows[first], columns[first])), shape=(len(train), self.n_items + 1))

    def _incidence_pairs(self, train: list[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
        """(n+1, n+1) c(i, j): the weighted count of sequences in which i and j (i != j) co-occur, within the
        window if set; a pair weighs the product of its events' weights (1 for two purchases)."""
        shape = (self.n_items + 1, self.n_items + 1)
        if self.window is None:
            incidence = self._incidence(train)
            pairs = (incidence.T @ incidence).tocsr()
        else:
            left, right, left_w, right_w, sequence_ids = [], [], [], [], []
            for index, (sequence, weights) in enumerate(train):
                for offset in range(1, min(self.window, len(sequence) - 1) + 1):
                    left.append(sequence[:-offset])
                    right.append(sequence[offset:])
                    left_w.append(weights[:-offset])
                    right_w.append(weights[offset:])
                    sequence_ids.append(np.full(len(sequence) - offset, index))
            if left:
                a, b, ids = (np.concatenate(x).astype(np.int64) for x in (left, right, sequence_ids))
                w = np.concatenate(left_w) * np.concatenate(right_w)
            else:
                a = b = ids = np.array([], dtype=np.int64)
                w = np.array([], dtype=np.float64)
            # One count per (sequence, unordered pair), its heaviest, in both directions.
            low, high = np.minimum(a, b), np.maximum(a, b)
            order = np.lexsort((-w, high, low, ids))
            ids, low, high, w = ids[order], low[order], high[order], w[order]
            first = (np.r_[True, (ids[1:] != ids[:-1]) | (low[1:] != low[:-1]) | (high[1:] != high[:-1])]
                     if len(ids) else ids.astype(bool))
            i, j, w = low[first], high[first], w[first]
            pairs = sp.csr_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=shape)
            pairs.sum_duplicates()
        pairs = pairs.tocoo()
        off_diagonal = pairs.row != pairs.col  # an item is not its own neighbour
        return sp.csr_matrix(
            (pairs.data[off_diagonal], (pairs.row[off_diagonal], pairs.col[off_diagonal])), shape=shape
        )

    def fit(self, train: list[np.ndarray], n_items: int) -> ItemKNN:
        self.n_items = n_items
        self.popularity_ = _popularity_rank(_counts(train, n_items))
        train = [counted_events(s, n_items, self.behaviour_weight) for s in train]
        train = [pair for pair in train if len(pair[0])]
        # Cosine norms: the sum over sequences of an item's squared weight (its sequence count, for purchases).
        n_sequences = np.asarray(self._incidence(train).power(2).sum(axis=0)).ravel()
        pairs = self._incidence_pairs(train).tocoo()
        norms = np.sqrt(n_sequences[pairs.row] * n_sequences[pairs.col]) + self.shrink
        similarity = pairs.data / norms
        # Keep each row's top neighbours: sort by (row, -similarity, column) and cut at rank ``neighbours``.
        order = np.lexsort((pairs.col, -similarity, pairs.row))
        rows, columns, similarity = pairs.row[order], pairs.col[order], similarity[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
        keep = rank < self.neighbours
        self.similarity_ = sp.csr_matrix(
            (similarity[keep], (rows[keep], columns[keep])), shape=(n_items + 1, n_items + 1)
        )
        return self

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        knn = history_weights(histories, self.n_items, self.decay, self.behaviour_weight).times_sparse(self.similarity_)
        # Reached items score > 0; unreached ones sit in [-1, 0) in popularity order.
        scores = np.where(knn > 0, knn, self.popularity_[None, :] - 1.0)
        return _finish(scores)


@dataclass
class TextKNN:
    """Content-based: items whose text embedding is close to the (recency-weighted) mean of the history's.

    Needs no co-occurrence, so it can recommend items never bought in training. ``embeddings`` is
    (n_items + 1, d) in internal-id order with row 0 (PAD) zero; items without text should be zero rows too
    (they score 0). A history with no text at all is ranked by popularity.
    """

    decay: float = 0.9  # history weight ratio between an event and the one after it
    n_items: int = field(default=0, init=False)  # set by fit
    unit_: np.ndarray = field(
        default=None, init=False, repr=False
    )  # (n_items + 1, d) L2-normalised embeddings
    popularity_: np.ndarray = field(default=None, init=False, repr=False)  # (n_items + 1,) ranks in [0, 1)

    def fit(self, train: list[np.ndarray], n_items: int, embeddings: np.ndarray) -> TextKNN:
        if embeddings.shape[0] != n_items + 1:
            raise ValueError(f"embeddings need n_items + 1 = {n_items + 1} rows, got {embeddings.shape[0]}")
        self.n_items = n_items
        self.unit_ = unit_rows(embeddings)
        self.popularity_ = _popularity_rank(_counts(train, n_items))
        return self

    def _unit64(self) -> np.ndarray:
        """``unit_`` in float64, converted once per fitted matrix: the history weights are float64, and every product
        of the two would otherwise convert the whole (n_items + 1, d) matrix again."""
        cached = self.__dict__.get("_unit64_cache")
        if cached is None or cached[0] is not self.unit_:
            cached = (self.unit_, np.asarray(self.unit_, dtype=np.float64))
            self.__dict__["_unit64_cache"] = cached
        return cached[1]

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        unit = self._unit64()
        # (B, d): the mean's scale does not matter for a cosine
        profile = history_weights(histories, self.n_items, self.decay).times_dense(unit)
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile = np.divide(profile, norms, out=np.zeros_like(profile), where=norms > 0)
        cosine = profile @ unit.T  # (B, n_items + 1)
        # A history without text (or without events) has no profile: fall back to popularity.
        return _finish(np.where(norms > 0, cosine, self.popularity_[None, :]))


BASELINE_CLASSES = {cls.__name__: cls for cls in (MostPopular, RecentPopular, BuyAgain, ItemKNN, TextKNN)}


def save_baselines(models: dict[str, Any], folder: str | Path, info: dict[str, Any] | None = None) -> None:
    """Per baseline ``{name}.json`` (class, options) and ``{name}.npz`` (fitted arrays, no pickles); ``index.json``
    lists them in order, with ``info``."""
    folder = Path(folder)
    for name, model in models.items():
        options, state, arrays = {}, {}, {}
        for spec_field in dataclasses.fields(model):
            value = getattr(model, spec_field.name)
            if spec_field.init:
                options[spec_field.name] = value
            elif sp.issparse(value):
                csr = value.tocsr()
                arrays.update({f"{spec_field.name}.data": csr.data, f"{spec_field.name}.indices": csr.indices,
                               f"{spec_field.name}.indptr": csr.indptr, f"{spec_field.name}.shape": np.asarray(csr.shape)})
            elif isinstance(value, np.ndarray):
                arrays[spec_field.name] = value
            else:
                state[spec_field.name] = value
        spec = {"class": type(model).__name__, "options": options, "state": state}
        (folder / f"{name}.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        np.savez(folder / f"{name}.npz", **arrays)
    (folder / "index.json").write_text(json.dumps({"models": list(models), **(info or {})}, indent=2) + "\n")


def load_baselines(folder: str | Path) -> dict[str, Any]:
    """The fitted baselines of a ``save_baselines`` folder, by name, in the order they were saved."""
    folder = Path(folder)
    if not (folder / "index.json").exists():
        raise FileNotFoundError(f"{folder} holds no baselines (no index.json).")
    return {name: _load_baseline(folder, name) for name in json.loads((folder / "index.json").read_text())["models"]}


def _load_baseline(folder: Path, name: str) -> Any:
    spec = json.loads((folder / f"{name}.json").read_text())
    model = BASELINE_CLASSES[spec["class"]](**spec["options"])
    with np.load(folder / f"{name}.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    for key, value in spec["state"].items():
        setattr(model, key, value)
    for key in {key.split(".")[0] for key in arrays}:
        if key in arrays:
            setattr(model, key, arrays[key])
        else:
            parts = (arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"])
            setattr(model, key, sp.csr_matrix(parts, shape=tuple(arrays[f"{key}.shape"])))
    return model


# Options the baselines with options try on the validation rows (``pick_options``). Recency-weighted item-kNN
# (decay < 1) wins where the recorded order carries signal (a till's line order, a basket the history ends in);
# plain counts win where customers re-buy over months.
BUY_AGAIN_GRID: tuple[dict[str, Any], ...] = ({"decay": 1.0}, {"decay": 0.99}, {"decay": 0.9})
ITEM_KNN_GRID: tuple[dict[str, Any], ...] = (
    {}, {"shrink": 10.0, "neighbours": 50}, {"window": 3}, {"window": 5}, {"window": 5, "decay": 0.7},
    {"window": 2, "decay": 0.5},
)


POPULARITY_GRID: tuple[dict[str, Any], ...] = ({},)
# How much a view, cart or favourite counts against a purchase, tried where the training sequences hold any: 0 keeps
# the purchases-only model in the race, so validation can also say that browsing does not help.
BEHAVIOUR_WEIGHTS = (0.0, 0.1, 0.5)


def with_behaviour_weights(grid, train: list[np.ndarray], n_items: int) -> tuple[dict[str, Any], ...]:
    """``grid`` crossed with ``BEHAVIOUR_WEIGHTS`` when ``train`` holds other behaviours than purchases, else as is."""
    if not holds_behaviour(train, n_items):
        return tuple(grid)
    return tuple({**options, "behaviour_weight": weight} for options in grid for weight in BEHAVIOUR_WEIGHTS)


def pick_options(model_class, grid, train: list[np.ndarray], rows, n_items: int) -> tuple[dict, list[float]]:
    """The options of ``grid`` whose model, fit on ``train``, ranks ``rows`` (an ``EvalSet``) best by NDCG@10,
    and every option's NDCG@10 in grid order; ties keep the earlier option."""
    from recmodels.metrics import evaluate

    scores = [evaluate(model_class(**options).fit(train, n_items).score, rows, n_items, (10,))["ndcg@10"]
              for options in grid]
    return dict(grid[int(np.argmax(scores))]), scores
