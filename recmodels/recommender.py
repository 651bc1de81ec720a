"""The two-stage recommender as one object: candidate sources, point-in-time features and the LambdaMART ranker.

It is what a promoted bundle holds and what evaluation, batch recommendations and serving call, so all three
rank exactly as the evaluated model did. Everything is in internal item ids (``recmodels.sequences``); mapping
shop ids in and out is the caller's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recmodels.ranking import LambdaRanker, Scorer, TimeLike, compute_features, generate_candidates, rerank_topk


@dataclass(frozen=True)
class TwoStageConfig:
    n_candidates: int = 100  # candidates per row, all sources together
    recent_items: int = 10  # distinct recent history items behind the text_cosine feature


def without_history_items(candidates: pd.DataFrame, histories: list[np.ndarray]) -> pd.DataFrame:
    """``candidates`` minus the rows whose item is already in that row's history."""
    lengths = [len(h) for h in histories]
    seen = pd.DataFrame({
        "row": np.repeat(np.arange(len(histories)), lengths),
        "item": np.concatenate(histories) if sum(lengths) else np.array([], np.int64),
    }).drop_duplicates()
    merged = candidates[["row", "item"]].merge(seen.assign(seen=True), on=["row", "item"], how="left")
    return candidates.loc[merged["seen"].isna().to_numpy()].reset_index(drop=True)


class TwoStageRecommender:
    """``sources`` (name -> scorer, in the order the ranker's features were built) re-ranked by ``ranker``."""

    def __init__(
        self,
        sources: Mapping[str, Scorer],
        ranker: LambdaRanker,
        config: TwoStageConfig = TwoStageConfig(),
        item_text: np.ndarray | None = None,
    ):
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

    def rank(
        self,
        histories: list[np.ndarray],
        row_keys: np.ndarray,
        events: pd.DataFrame,
        cutoff: TimeLike,
        exclude_history: bool = False,
    ) -> pd.DataFrame:
        """Every candidate of every row with its features and the ranker's ``score`` (higher first).

        ``row_keys[i]`` is the user key of ``histories[i]`` in ``events`` (``compute_features``' layout);
        features read only events before ``cutoff``.
        """
        candidates = generate_candidates(self.sources, histories, self.config.n_candidates)
        if exclude_history:
            candidates = without_history_items(candidates, histories)
        features = compute_features(candidates, row_keys, events, cutoff, item_text=self.item_text,
                                    recent_items=self.config.recent_items)
        features["score"] = self.ranker.score(features)
        return features

    def topk(self, ranked: pd.DataFrame, n_rows: int, k: int) -> np.ndarray:
        """(n_rows, k) internal ids from ``rank``'s output, best first, PAD-filled."""
        return rerank_topk(ranked, ranked["score"].to_numpy(), n_rows, k)
