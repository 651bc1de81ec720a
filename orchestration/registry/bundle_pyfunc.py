"""The recommender bundle as an MLflow pyfunc model, logged from this file ("models from code": no pickle).

MLflow runs this file when it loads a registered bundle with ``mlflow.pyfunc.load_model``; nothing imports it.
A row is one shopper's history of shop item ids, oldest first; the answer is the top ``k`` items with their
ranker scores. The shop's purchase log is not part of the bundle, so per-customer and per-item activity features
read as zero here; the serving API (``recsys serve``) ranks with the shop's live events.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from orchestration.registry.bundle import ARTIFACT_KEY, DEFAULT_K, HISTORY_COLUMN, ITEMS_COLUMN, SCORES_COLUMN, load_bundle

EVENT_COLUMNS = {"user_key": object, "item": np.int64, "occurred_at": "datetime64[ns]", "quantity": float,
                 "unit_price": float, "basket_id": object}


class RecommenderBundleModel(PythonModel):
    def load_context(self, context) -> None:
        from pathlib import Path

        self.bundle = load_bundle(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", DEFAULT_K))
        bundle = self.bundle
        histories = [bundle.internal_ids([str(i) for i in history]) for history in model_input[HISTORY_COLUMN]]
        histories = [history[history > 0] for history in histories]  # items the bundle does not know
        keys = np.asarray([f"row-{row}" for row in range(len(histories))], dtype=object)
        events = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in EVENT_COLUMNS.items()})
        ranked = bundle.recommender.rank(histories, keys, events, bundle.spec["last_event"])
        ranked = ranked.sort_values(["row", "score", "item"], ascending=[True, False, True], kind="stable")
        top = ranked.groupby("row", sort=True).head(k)
        by_row = dict(tuple(top.groupby("row", sort=False)))
        items, scores = [], []
        for row in range(len(histories)):
            chosen = by_row.get(row, top.iloc[:0])
            items.append([str(i) for i in bundle.shop_ids(chosen["item"].to_numpy())])
            scores.append([float(s) for s in chosen["score"]])
        return pd.DataFrame({ITEMS_COLUMN: items, SCORES_COLUMN: scores})


mlflow.models.set_model(RecommenderBundleModel())
