"""The model assets' plain helpers (the text matrix, metric rows), without Dagster."""

import numpy as np
import pandas as pd

from orchestration.store.model_files import aligned_text_matrix
from orchestration.store.reports import metric_rows


def test_text_matrix_zeroes_pad_missing_and_empty_items():
    embedded = pd.DataFrame({"item_id": ["b", "a", "z"], "is_empty_text": [False, True, False]})
    vectors = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    matrix, found = aligned_text_matrix(np.array(["a", "b", "c"]), embedded, vectors)
    np.testing.assert_array_equal(matrix, [[0, 0], [0, 0], [1, 0], [0, 0]])  # PAD, a (empty text), b, c (no vector)
    assert found == 1


def test_metric_rows_split_names_into_segment_metric_and_k():
    from recmodels.stats import Interval

    results = {"n_rows": 4.0, "ndcg@10": 0.5, "mrr": 0.25, "cold/n_rows": 1.0, "cold/hr@20": 1.0}
    rows = metric_rows("m", "test", "allowed", results, {"ndcg@10": Interval(0.5, 0.25, 0.75, 4)})
    nan = float("nan")
    common = {"model": "m", "split": "test", "variant": "allowed"}
    expected = [
        {**common, "segment": "all", "metric": "ndcg", "k": 10, "value": 0.5, "n_rows": 4, "ci_low": 0.25, "ci_high": 0.75},
        {**common, "segment": "all", "metric": "mrr", "k": None, "value": 0.25, "n_rows": 4, "ci_low": nan, "ci_high": nan},
        {**common, "segment": "cold", "metric": "hr", "k": 20, "value": 1.0, "n_rows": 1, "ci_low": nan, "ci_high": nan},
    ]
    assert pd.DataFrame(rows).equals(pd.DataFrame(expected))
