"""Guards against the commonest ranking bug: features computed with the answer in them.

``leak_suspects`` flags a feature that alone nearly separates purchases from the rest; ``future_event_rows``
counts rows whose features read an event at or after the cut-off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from recmodels.ranking.lookups import TimeLike


def single_feature_auc(features: pd.DataFrame, labels: np.ndarray, columns: list[str]) -> dict[str, float]:
    """max(AUC, 1 - AUC) of each column alone as a purchase predictor, over rows with a 0/1 label.

    Rows whose label is NaN are unlabelled and skipped. NaN feature values rank below every number, so a
    feature whose missingness alone separates the classes is caught too. Ties count half (Mann-Whitney).
    """
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) != len(features):
        raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
    labelled = ~np.isnan(labels)
    y = labels[labelled]
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0, 1 or NaN (unlabelled)")
    n_positive, n_negative = int(y.sum()), int(len(y) - y.sum())
    if n_positive == 0 or n_negative == 0:
        raise ValueError(f"need both classes for an AUC, got {n_positive} positives, {n_negative} negatives")
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"features lack columns {missing}")
    out = {}
    for column in columns:
        values = features[column].to_numpy(np.float64)[labelled]
        ranks = rankdata(np.where(np.isnan(values), -np.inf, values))
        auc = (ranks[y == 1].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
        out[column] = float(max(auc, 1.0 - auc))
    return out


def leak_suspects(
    features: pd.DataFrame, labels: np.ndarray, columns: list[str], max_auc: float = 0.98
) -> dict[str, float]:
    """Columns whose single-feature AUC (see ``single_feature_auc``) exceeds ``max_auc``, highest first.

    A feature that alone nearly separates purchases from non-purchases was almost certainly computed with
    the answer in it (a window that overlaps the targets, a label-derived column).
    """
    auc = single_feature_auc(features, labels, columns)
    return dict(sorted(((c, a) for c, a in auc.items() if a > max_auc), key=lambda pair: -pair[1]))


def future_event_rows(features: pd.DataFrame, cutoff: TimeLike | np.ndarray) -> int:
    """Rows whose ``features_as_of`` is at or after their cut-off (one time, or one per evaluation row, indexed
    by ``features["row"]``): each one read an event it must not see."""
    as_of = features["features_as_of"].to_numpy().astype("datetime64[ns]")
    if np.ndim(cutoff):
        limit = np.asarray(cutoff, dtype="datetime64[ns]")[features["row"].to_numpy(np.int64)]
    else:
        limit = np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")
    return int((as_of >= limit).sum())
