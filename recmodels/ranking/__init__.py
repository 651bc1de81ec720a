"""Second stage of the recommender: candidates from several scorers, features, a LightGBM LambdaRank ranker.

Flow: ``generate_candidates`` (union of the sources' top items per evaluation row) -> ``compute_features``
(point-in-time features, only events before the cut-off) -> ``LambdaRanker`` -> ``rerank_topk`` ->
``recmodels.metrics.ranking_metrics``; ``labelled_candidates`` runs the first steps and the labels for one phase.
``leak_suspects`` and ``future_event_rows`` guard the features against the commonest ranking bug: features
computed with the answer in them.

A scorer maps ``histories`` to (B, n_items + 1) float32 scores with column 0 (PAD) at -inf, as every model in
``recmodels.baselines`` and ``SASRec.score`` do. Models are saved as LightGBM text plus JSON, never pickled.
"""

from recmodels.ranking.candidates import (
    DEFAULT_N_CANDIDATES,
    Scorer,
    candidate_labels,
    candidate_recall,
    generate_candidates,
)
from recmodels.ranking.features import (
    DEFAULT_RECENT_ITEMS,
    FEATURE_DESCRIPTIONS,
    compute_features,
    feature_columns,
    price_vs_user,
    purchase_events,
)
from recmodels.ranking.leakage import future_event_rows, leak_suspects, single_feature_auc
from recmodels.ranking.lookups import NEVER_DAYS, TimeLike
from recmodels.ranking.ranker import (
    FORMAT_VERSION,
    LambdaRanker,
    RankerConfig,
    ranker_feature_names,
    rerank_topk,
)
from recmodels.ranking.reorder import quantity_ratio
from recmodels.ranking.training_rows import labelled_candidates

__all__ = [
    "DEFAULT_N_CANDIDATES",
    "DEFAULT_RECENT_ITEMS",
    "FEATURE_DESCRIPTIONS",
    "FORMAT_VERSION",
    "NEVER_DAYS",
    "LambdaRanker",
    "RankerConfig",
    "Scorer",
    "TimeLike",
    "candidate_labels",
    "candidate_recall",
    "compute_features",
    "feature_columns",
    "future_event_rows",
    "generate_candidates",
    "labelled_candidates",
    "leak_suspects",
    "price_vs_user",
    "purchase_events",
    "quantity_ratio",
    "ranker_feature_names",
    "rerank_topk",
    "single_feature_auc",
]
