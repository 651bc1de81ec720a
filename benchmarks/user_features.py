"""The features of a serving request: compute_features + the item table against compute_user_features.

    python -m benchmarks.user_features --events 200 --candidates 200

One customer, then 30 at once, on a synthetic shop shaped like Online Retail (baskets, some missing, prices, text
vectors, views and carts); each timed on one thread as the median of ``--repeats`` calls, after checking that both
give the same frame. The JSON line has the milliseconds per call of both paths, wall and CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from benchmarks.common import emit_json, machine, print_table
from recmodels.ranking import compute_features
from recmodels.ranking.user_features import compute_user_features
from recmodels.recommender import ITEM_LEVEL_FEATURES, _with_item_features, item_feature_table

CUTOFF = pd.Timestamp("2011-12-01")
N_ITEMS = 3_600


def _shop(n_users: int, per_user: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    baskets = rng.integers(0, n // 15 + 1, n).astype(str).astype(object)
    baskets[rng.random(n) < 0.05] = None
    purchases = pd.DataFrame({
        "user_key": np.repeat([f"c{i}" for i in range(n_users)], per_user),
        "item": rng.integers(1, N_ITEMS + 1, n),
        "occurred_at": CUTOFF - pd.to_timedelta(rng.integers(0, 365 * 24 * 60, n), unit="min"),
        "quantity": rng.choice([1.0, 2.0, 6.0, 12.0, 24.0], n),
        "unit_price": rng.choice([0.42, 0.85, 1.25, 1.65, 2.55, 4.95], n),
        "basket_id": baskets,
    })
    m = n // 4
    behaviour = pd.DataFrame({
        "user_key": rng.choice(purchases["user_key"].unique(), m), "item": rng.integers(1, N_ITEMS + 1, m),
        "occurred_at": CUTOFF - pd.to_timedelta(rng.integers(0, 30 * 24 * 60, m), unit="min"),
        "event_type": rng.choice(["view", "view", "cart", "favourite"], m), "quantity": np.nan,
    })
    return purchases, behaviour


def _time(call, repeats: int) -> tuple[float, float]:
    """(median wall, median CPU) milliseconds per call; on a shared machine the CPU time of the calling thread is
    the steadier of the two."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        call()
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return float(np.median(wall) * 1000), float(np.median(cpu) * 1000)


def _compare(n_users: int, args: argparse.Namespace, table: pd.DataFrame, text: np.ndarray) -> dict[str, float]:
    events, behaviour = _shop(n_users, args.events, seed=n_users)
    keys = np.array([f"c{i}" for i in range(n_users)], dtype=object)
    rng = np.random.default_rng(0)
    items = np.concatenate([np.sort(rng.choice(np.arange(1, N_ITEMS + 1), args.candidates, replace=False))
                            for _ in range(n_users)])
    candidates = pd.DataFrame({"row": np.repeat(np.arange(n_users), args.candidates), "item": items,
                               "sasrec_score": rng.random(len(items))})

    def pandas_path() -> pd.DataFrame:
        features = compute_features(candidates, keys, events, CUTOFF, item_text=text, behaviour=behaviour)
        return _with_item_features(features, table, keys, events, CUTOFF)

    def numpy_path() -> pd.DataFrame:
        return compute_user_features(candidates, keys, events, CUTOFF, table, ITEM_LEVEL_FEATURES, item_text=text,
                                     behaviour=behaviour)

    pd.testing.assert_frame_equal(numpy_path(), pandas_path(), check_exact=True)
    figures = {}
    for name, path in (("pandas", pandas_path), ("numpy", numpy_path)):
        figures[f"{name}_ms"], figures[f"{name}_cpu_ms"] = _time(path, args.repeats)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200, help="purchase events per customer")
    parser.add_argument("--candidates", type=int, default=200, help="candidate rows per customer")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    everybody, views = _shop(400, 50, seed=7)
    table = item_feature_table(everybody, CUTOFF, N_ITEMS, views)
    text = np.random.default_rng(1).normal(size=(N_ITEMS + 1, 384)).astype(np.float32)
    figures = {}
    with threadpool_limits(1):
        for n_users in (1, 30):
            figures[f"{n_users}_customers"] = _compare(n_users, args, table, text)
    rows = [(f"{name} {path}", f"{ms:.2f}") for name, paths in figures.items() for path, ms in paths.items()]
    print_table(rows, "ms per call")
    emit_json({"benchmark": "user_features", **figures, "machine": machine()})


if __name__ == "__main__":
    main()
