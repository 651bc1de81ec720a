"""One phase's ranker rows: candidates from the stage-one models, their point-in-time features and labels.

The pipeline's ``ranker_features`` and the ranking benchmark both build their rows here, so the two rank the
same rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from recmodels.ranking.candidates import DEFAULT_N_CANDIDATES, Scorer, candidate_labels, generate_candidates
from recmodels.ranking.features import DEFAULT_RECENT_ITEMS, compute_features
from recmodels.ranking.lookups import TimeLike
from recmodels.splits import EvalSet


def labelled_candidates(
    sources: Mapping[str, Scorer],
    rows: EvalSet,
    events: pd.DataFrame,
    cutoff: TimeLike | np.ndarray,
    n_candidates: int = DEFAULT_N_CANDIDATES,
    item_text: np.ndarray | None = None,
    recent_items: int = DEFAULT_RECENT_ITEMS,
    behaviour: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """``rows``' candidates from ``sources`` with their features as of ``cutoff`` (one, or one per row: ``compute_features``), and
    each candidate's 0/1 label against ``rows.targets`` (``candidate_labels``)."""
    candidates = generate_candidates(sources, rows.histories, n_candidates)
    features = compute_features(candidates, rows.keys, events, cutoff, item_text=item_text, recent_items=recent_items,
                                behaviour=behaviour)
    return features, candidate_labels(features, rows.targets)
