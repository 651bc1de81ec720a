"""The two-stage recommender as one object: candidate sources, point-in-time features and the LambdaMART ranker.

It is what a promoted bundle holds and what evaluation, batch recommendations and serving call, so all three
rank exactly as the evaluated model did. Everything is in internal item ids (``recmodels.sequences``); mapping
shop ids in and out is the caller's job.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recmodels.event_table import EventTable
from recmodels.ranking import (
    DEFAULT_N_CANDIDATES,
    DEFAULT_RECENT_ITEMS,
    LambdaRanker,
    Scorer,
    TimeLike,
    compute_features,
    price_vs_user,
    quantity_ratio,
    rerank_topk,
)
from recmodels.ranking.behaviour import no_behaviour
from recmodels.ranking.candidate_cache import CandidateCache
from recmodels.ranking.candidates import Candidates, RankingMemo, candidate_arrays
from recmodels.ranking.user_features import compute_user_features, feature_frame, user_feature_columns

# Features that read every customer's events. A service computes them once per data refresh and passes only the
# requesting customers' events per request, which gives the same features at a fraction of the cost.
ITEM_LEVEL_FEATURES = ("item_purchases", "item_purchases_7d", "item_purchases_30d", "item_trend", "item_price",
                       "item_age_days", "item_repeat_rate", "item_median_quantity", "item_views",
                       "item_view_to_purchase")
_NOBODY = "\x00nobody"  # a user key no shop id pseudonymises to
_NO_BEHAVIOUR = EventTable.of(no_behaviour())


def item_feature_table(events: pd.DataFrame, cutoff: TimeLike, n_items: int,
                       behaviour: pd.DataFrame | None = None) -> pd.DataFrame:
    """ITEM_LEVEL_FEATURES of every internal id 0..n_items as of ``cutoff`` (row 0, PAD, is unused); the behaviour
    ones only with ``behaviour`` events."""
    candidates = pd.DataFrame({"row": np.zeros(n_items, np.int64), "item": np.arange(1, n_items + 1)})
    features = compute_features(candidates, np.array([_NOBODY], dtype=object), events, cutoff, behaviour=behaviour)
    present = [name for name in ITEM_LEVEL_FEATURES if name in features.columns]
    return features.set_index("item")[present].reindex(np.arange(n_items + 1))


def no_purchases() -> pd.DataFrame:
    """A ``purchase_events`` frame without events."""
    return pd.DataFrame({"user_key": np.array([], object), "item": np.array([], np.int64),
                         "occurred_at": np.array([], "datetime64[ns]"), "quantity": np.array([], np.float64),
                         "unit_price": np.array([], np.float64), "basket_id": np.array([], object)})


def _with_item_features(features: pd.DataFrame, table: pd.DataFrame, row_keys: np.ndarray, events: pd.DataFrame,
                        cutoff: TimeLike) -> pd.DataFrame:
    """``features`` computed from some customers' events only, with the item-level columns from ``table``."""
    items = features["item"].to_numpy()
    for name in ITEM_LEVEL_FEATURES:
        if name in features.columns and name in table.columns:
            features[name] = table[name].to_numpy()[items]
    if "item_price_vs_user" in features.columns:
        # The item's price has just changed to the one over every customer's events, so the ratio follows it.
        before = events[events["occurred_at"].to_numpy() < np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")]
        median = before.groupby("user_key")["unit_price"].median()
        user_price = median.reindex(np.asarray(row_keys, dtype=object)[features["row"].to_numpy()]).to_numpy(float)
        features["item_price_vs_user"] = price_vs_user(features["item_price"].to_numpy(float), user_price)
    if "user_item_quantity_ratio" in features.columns:
        # Against the item's median over every customer's lines, not over this customer's alone.
        features["user_item_quantity_ratio"] = quantity_ratio(features["user_item_mean_quantity"],
                                                              features["item_median_quantity"])
    return features


def _looked_up(candidates: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``candidates`` with every column of ``table`` (indexed by internal id) at their item, in its order."""
    items = candidates["item"].to_numpy(np.int64)
    numeric = table.select_dtypes("number").columns
    # The numbers as one block: a frame of one 2-D array is built far faster than one of many columns.
    looked = pd.DataFrame(table[numeric].to_numpy(np.float64)[items], columns=numeric, index=candidates.index)
    for name in table.columns.difference(numeric, sort=False):
        looked[name] = table[name].to_numpy()[items]
    return pd.concat([candidates, looked[table.columns]], axis=1)


def blank_frame(candidates: Candidates, blank_features: pd.DataFrame, score: np.ndarray) -> pd.DataFrame:
    """``rank``'s frame of rows ranked by ``rank_blank``: the candidates, their features and ``score``."""
    return _looked_up(candidates.frame(), blank_features).assign(score=score)


@dataclass(frozen=True)
class TwoStageConfig:
    n_candidates: int = DEFAULT_N_CANDIDATES  # candidates per row, all sources together
    recent_items: int = DEFAULT_RECENT_ITEMS  # distinct recent history items behind the text_cosine feature
    behaviour: bool = False  # the ranker reads the BEHAVIOUR_FEATURES (views, carts, favourites)
    # The sources read histories of every behaviour (tokens, recmodels.sequences.encode), not only purchases.
    sequence_behaviour: bool = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TwoStageConfig:
        """The config a stored feature or bundle spec was built with."""
        return cls(n_candidates=spec["n_candidates"], recent_items=spec["recent_items"],
                   behaviour=bool(spec.get("behaviour", False)),
                   sequence_behaviour=bool(spec.get("sequence_behaviour", False)))


def in_history(rows: np.ndarray, items: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """Whether each (row, item) pair's item is in that row's history."""
    lengths = [len(h) for h in histories]
    seen_rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    seen_items = np.concatenate(histories).astype(np.int64) if sum(lengths) else np.array([], np.int64)
    rows, items = np.asarray(rows, np.int64), np.asarray(items, np.int64)
    # (row, item) pairs packed into one int64 each, so a membership test replaces a DataFrame merge.
    width = int(max(items.max(initial=0), seen_items.max(initial=0))) + 1
    return np.isin(rows * width + items, seen_rows * width + seen_items)


def without_history_items(candidates: pd.DataFrame, histories: list[np.ndarray]) -> pd.DataFrame:
    """``candidates`` minus the rows whose item is already in that row's history."""
    seen = in_history(candidates["row"].to_numpy(), candidates["item"].to_numpy(), histories)
    return candidates.loc[~seen].reset_index(drop=True)


RANKER = "ranker"  # ``serves``: the ranker orders the candidates; otherwise the name of the one source that does


class TwoStageRecommender:
    """``sources`` (name -> scorer, in the order the ranker's features were built) re-ranked by ``ranker``, or,
    when a single source won the evaluation, ordered by that source alone (``serves``).

    A source alone ranks its own candidates exactly as it ranks the whole catalogue: candidates are taken
    round-robin by rank, so every source's top ``n_candidates / len(sources)`` are among them, and its score
    breaks ties toward the lower id as its full ranking does. The features are computed either way, for the
    explanations."""

    def __init__(
        self,
        sources: Mapping[str, Scorer],
        ranker: LambdaRanker,
        config: TwoStageConfig = TwoStageConfig(),
        item_text: np.ndarray | None = None,
        serves: str = RANKER,
    ):
        if serves != RANKER and serves not in sources:
            raise ValueError(f"serves must be {RANKER!r} or one of the sources {list(sources)}, got {serves!r}")
        missing = [name for name in ranker.feature_names if name.endswith(("_score", "_rank"))
                   and name.rsplit("_", 1)[0] not in sources]
        if missing:
            raise ValueError(f"the ranker reads {missing}, but the sources are {list(sources)}")
        if "text_cosine" in ranker.feature_names and item_text is None:
            raise ValueError("the ranker reads text_cosine, which needs item_text")
        self.sources = dict(sources)
        self.ranker = ranker
        self.config = config
        self.item_text = item_text
        self.serves = serves
        self._memo = RankingMemo()  # the sources' rankings that every row shares (popularity), kept between calls
        self.candidate_cache = CandidateCache()  # each history's candidates, for rank_known
        self._blank_layout_cache: tuple[pd.DataFrame, np.ndarray] | None = None

    def rank(
        self,
        histories: list[np.ndarray],
        row_keys: np.ndarray,
        events: pd.DataFrame,
        cutoff: TimeLike | np.ndarray,
        exclude_history: bool = False,
        item_features: pd.DataFrame | None = None,
        behaviour: pd.DataFrame | None = None,
        blank_features: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Every candidate of every row with its features and the ranker's ``score`` (higher first).

        ``row_keys[i]`` is the user key of ``histories[i]`` in ``events`` (``compute_features``' layout);
        features read only events before ``cutoff`` (one time, or one per row); ``behaviour`` (views, carts,
        favourites) feeds the behaviour features when the ranker learned from them. With ``item_features``
        (``item_feature_table`` of all events at the same cut-off), ``events`` need only hold these rows' customers;
        with ``blank_features`` too (``blank_features`` of that table), rows whose user has no event in ``events``
        nor ``behaviour`` take their features from it (their ``features_as_of`` is NaT).
        """
        candidates = candidate_arrays(self.sources, histories, self.config.n_candidates, memo=self._memo).frame()
        if exclude_history:
            candidates = without_history_items(candidates, histories)
        if self.config.behaviour and behaviour is None:  # a caller without views (the MLflow pyfunc): none seen
            behaviour = no_behaviour()
        behaviour = behaviour if self.config.behaviour else None
        if blank_features is not None and item_features is None:
            raise ValueError("blank_features hold item-level features of item_features: pass both")
        blank = np.zeros(len(candidates), dtype=bool)
        if blank_features is not None:
            active = pd.unique(pd.concat([events["user_key"], behaviour["user_key"] if behaviour is not None
                                          else pd.Series([], dtype=object)]))
            blank = ~np.isin(np.asarray(row_keys, dtype=object), active)[candidates["row"].to_numpy(np.int64)]
        parts = []
        if not blank.all():
            computed = candidates[~blank] if blank.any() else candidates
            features = None
            if item_features is not None:  # a few customers' events (serving): the same frame, in numpy
                features = compute_user_features(computed, row_keys, events, cutoff, item_features,
                                                 ITEM_LEVEL_FEATURES, item_text=self.item_text,
                                                 recent_items=self.config.recent_items, behaviour=behaviour)
            if features is None:
                features = compute_features(computed, row_keys, events, cutoff, item_text=self.item_text,
                                            recent_items=self.config.recent_items, behaviour=behaviour)
                if item_features is not None:
                    features = _with_item_features(features, item_features, row_keys, events, cutoff)
            parts.append(features)
        if blank.any():
            parts.append(_looked_up(candidates[blank], blank_features))
        features = parts[0] if len(parts) == 1 else pd.concat(parts).sort_index()
        features["score"] = (self.ranker.score(features) if self.serves == RANKER
                             else features[f"{self.serves}_score"].to_numpy(np.float64))
        return features

    def rank_blank(self, histories: list[np.ndarray], blank_features: pd.DataFrame,
                   seen: list[np.ndarray] | None = None) -> tuple[Candidates, np.ndarray]:
        """``rank`` of rows whose user has no event at all, as arrays: their candidates and scores, exactly as
        ``rank`` gives them with ``blank_features``, without a frame (``blank_frame`` makes it when asked for).
        ``seen[i]``: items left out of row i's candidates before scoring (none without)."""
        candidates = candidate_arrays(self.sources, histories, self.config.n_candidates, memo=self._memo)
        if seen is not None:
            candidates = candidates.take(~in_history(candidates.rows, candidates.items, seen))
        if self.serves != RANKER:
            return candidates, candidates.scores[self.serves].copy()
        x = self._blank_layout(blank_features)[candidates.items]  # (n, features): the blank ones, sources' 0
        self._fill_sources(x, candidates)
        return candidates, self.ranker.score_matrix(x) if len(x) else np.array([], np.float64)

    def rank_known(self, histories: list[np.ndarray], row_keys: np.ndarray, events: EventTable, cutoff: TimeLike,
                   item_features: pd.DataFrame, behaviour: EventTable | None = None,
                   seen: list[np.ndarray] | None = None
                   ) -> tuple[Candidates, np.ndarray, Callable[[], pd.DataFrame]] | None:
        """``rank`` of rows whose users each have events (a few customers at one cut-off, ``item_features`` at
        hand), as arrays: their candidates, scores and a function making ``rank``'s frame of them when asked for,
        all exactly as ``rank`` gives them. A history ranked here before reuses its candidates (``CandidateCache``):
        a customer's next event (a view) moves the cut-off and the features, but often not the history.
        ``seen[i]``: items left out of row i's candidates before their features are computed (none without). None
        where the features' array path does not reproduce ``rank``'s (``user_feature_columns``) or a row's user has
        no event the features read: ``rank`` takes those."""
        behaviour = (behaviour if behaviour is not None else _NO_BEHAVIOUR) if self.config.behaviour else None
        active = set(events["user_key"].tolist())
        if behaviour is not None:
            active |= set(behaviour["user_key"].tolist())
        if not active.issuperset(np.asarray(row_keys, dtype=object).tolist()):
            return None
        candidates = self.candidate_cache.candidates(self.sources, histories, self.config.n_candidates,
                                                     memo=self._memo)
        if seen is not None:
            candidates = candidates.take(~in_history(candidates.rows, candidates.items, seen))
        computed = user_feature_columns(candidates.rows, candidates.items, row_keys, events, cutoff, item_features,
                                        ITEM_LEVEL_FEATURES, item_text=self.item_text,
                                        recent_items=self.config.recent_items, behaviour=behaviour)
        if computed is None:
            return None
        columns, as_of = computed
        if self.serves != RANKER:
            score = candidates.scores[self.serves].copy()
        else:
            x = self._ranker_input(candidates, columns)
            if x is None:
                return None
            score = self.ranker.score_matrix(x)

        def frame() -> pd.DataFrame:
            return feature_frame(candidates.frame(), columns, as_of).assign(score=score)

        return candidates, score, frame

    def _ranker_input(self, candidates: Candidates, columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The ranker's (n, features) matrix of ``candidates`` with these feature ``columns``, as ``rank``'s frame
        gives it; None when a feature the ranker reads is missing."""
        names = self.ranker.feature_names
        x = np.empty((len(candidates), len(names)))
        for at, name in enumerate(names):
            if at in self._source_columns:
                continue
            if name not in columns:
                return None
            x[:, at] = columns[name]
        self._fill_sources(x, candidates)
        return x

    @functools.cached_property
    def _source_columns(self) -> dict[int, tuple[str, str]]:
        """The ranker's input columns a source fills: column -> (source, "score" or "rank")."""
        return {column: tuple(name.rsplit("_", 1)) for column, name in enumerate(self.ranker.feature_names)
                if name.endswith(("_score", "_rank")) and name.rsplit("_", 1)[0] in self.sources}

    def _fill_sources(self, x: np.ndarray, candidates: Candidates) -> None:
        """Put the sources' scores and ranks of ``candidates`` in their columns of ranker input ``x``."""
        for column, (name, part) in self._source_columns.items():
            x[:, column] = (candidates.scores if part == "score" else candidates.ranks)[name]

    def _blank_layout(self, blank_features: pd.DataFrame) -> np.ndarray:
        """Every item's ranker input row with its blank features, zeros in the sources' columns, made once per
        ``blank_features`` table."""
        cached = self._blank_layout_cache
        if cached is not None and cached[0] is blank_features:
            return cached[1]
        names = self.ranker.feature_names
        looked = [column for column in range(len(names)) if column not in self._source_columns]
        missing = [names[column] for column in looked if names[column] not in blank_features.columns]
        if missing:
            raise ValueError(f"features lack columns the ranker needs: {missing}")
        layout = np.zeros((len(blank_features), len(names)))
        layout[:, looked] = blank_features[[names[column] for column in looked]].to_numpy(np.float64)
        self._blank_layout_cache = (blank_features, layout)
        return layout

    def blank_features(self, item_features: pd.DataFrame, cutoff: TimeLike) -> pd.DataFrame:
        """Every item's features, the sources' aside, for a row whose user has no event at all (an anonymous
        session of items), indexed by internal id: computed by ``compute_features`` itself, once. Nothing in them
        depends on the row or the cut-off (the item-level ones come from ``item_features``, the rest are the
        "never" values of a user without events), so ``rank`` looks such rows up here instead of computing
        them, which costs far more than the rows themselves."""
        n_items = len(item_features) - 1
        candidates = pd.DataFrame({"row": np.zeros(n_items, np.int64), "item": np.arange(1, n_items + 1)})
        keys = np.array([_NOBODY], dtype=object)
        features = compute_features(candidates, keys, no_purchases(), cutoff, item_text=self.item_text,
                                    recent_items=self.config.recent_items,
                                    behaviour=no_behaviour() if self.config.behaviour else None)
        features = _with_item_features(features, item_features, keys, no_purchases(), cutoff)
        return features.drop(columns="row").set_index("item").reindex(np.arange(n_items + 1))

    def topk(self, ranked: pd.DataFrame, n_rows: int, k: int) -> np.ndarray:
        """(n_rows, k) internal ids from ``rank``'s output, best first, PAD-filled."""
        return rerank_topk(ranked, ranked["score"].to_numpy(), n_rows, k)
