"""Two-stage ranking on a temporal protocol: candidates from every model, re-ranked by LambdaMART.

    python -m benchmarks.ranking --protocol or-customer-temporal --data ../shared/data/online_retail/online_retail.csv.gz

Stage one is fit twice, as in production: on the data before the validation cut-off (its candidates for the
validation customers, labelled with what they bought in the validation month, train the ranker) and on the data
before the test cut-off (its candidates for the test customers are re-ranked and scored). Every feature is
computed from events before the cut-off of its phase. By default the ranker also learns from the customers of the
two months before the validation month (``--earlier-windows``), each labelled by candidates from stage one refit on
the data before its month. The JSON line has every single model, ``sasrec+ranker`` and the candidate recall of both
phases. ``--dask-workers N`` also trains the ranker on a local Dask cluster of N workers (lightgbm.dask) from the
same rows and scores it on the same test rows (``sasrec+ranker-dask``), with both fit times.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import SHARED_DATA, add_preset_flags, configs_from_flags, emit_json, machine
from benchmarks.sequential import BUY_AGAIN_GRID, ITEM_KNN_GRID, KS, _marts, pick_options, text_matrix
from recmodels.baselines import BuyAgain, ItemKNN, MostPopular, RecentPopular, TextKNN
from recmodels.item_text import build_item_texts
from recmodels.metrics import evaluate, ranking_metrics
from recmodels.presets import RANKING_BENCHMARK, SASRecConfig, TrainConfig
from recmodels.protocols import OR_TEST_CUTOFF, OR_VALIDATION_CUTOFF, or_customer_temporal
from recmodels.ranking import (
    DEFAULT_N_CANDIDATES,
    LambdaRanker,
    RankerConfig,
    candidate_recall,
    labelled_candidates,
    purchase_events,
    ranker_feature_names,
    rerank_topk,
)
from recmodels.ranking.distributed import DaskSettings, fit_ranker
from recmodels.sasrec import SASRec
from recmodels.splits import EvalSet, Split
from recmodels.training import Refit, fit_then_refit, train_sasrec

PROTOCOLS = ("or-customer-temporal",)


def _sasrec(split: Split, text: np.ndarray, model: SASRecConfig, train_config: TrainConfig) -> Refit:
    """SASRec of both phases: early-stopped before the validation cut-off, refit before the test cut-off."""
    def validate(trained) -> float:
        return evaluate(trained.score, split.validation, split.n_items, (10,))["ndcg@10"]

    return fit_then_refit(split.train, split.train_for_test, split.n_items, model, train_config, validate,
                          item_text_embeddings=text, train_timestamps=split.train_timestamps,
                          refit_timestamps=split.train_for_test_timestamps)


def _stage_one(split: Split, train: list[np.ndarray], times, text: np.ndarray, options: dict, sasrec: SASRec,
               sasrec_s: float) -> tuple[dict, dict]:
    """Every candidate source: the baselines fit on ``train``, beside ``sasrec`` (trained on it in ``sasrec_s``)."""
    seconds = {}
    sources = {}
    for name, build in {
        "popularity": lambda: MostPopular().fit(train, split.n_items),
        "recent-popularity": lambda: RecentPopular().fit(train, split.n_items, timestamps=times),
        "buy-again": lambda: BuyAgain(**options["buy-again"]).fit(train, split.n_items),
        "item-knn": lambda: ItemKNN(**options["item-knn"]).fit(train, split.n_items),
        "text-knn": lambda: TextKNN().fit(train, split.n_items, text),
    }.items():
        started = time.perf_counter()
        sources[name] = build()
        seconds[name] = time.perf_counter() - started
    seconds["sasrec"] = sasrec_s
    return {"sasrec": sasrec, **sources}, seconds


def _candidates(models: dict, rows: EvalSet, events: pd.DataFrame, cutoff: str, text: np.ndarray,
                n_candidates: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Every model's candidates for ``rows`` with their features as of ``cutoff``, and their labels."""
    return labelled_candidates({name: m.score for name, m in models.items()}, rows, events, cutoff, n_candidates,
                               item_text=text)


def _earlier_windows(fct: pd.DataFrame, split: Split, n_windows: int, events: pd.DataFrame, text: np.ndarray,
                     options: dict, model: SASRecConfig, train_config: TrainConfig,
                     n_candidates: int) -> list[tuple[pd.DataFrame, np.ndarray]]:
    """Labelled candidates of the ``n_windows`` months before the validation month, each from stage-one models fit
    on the data before its own month (SASRec for the validation phase's number of epochs)."""
    edges = [pd.Timestamp(OR_VALIDATION_CUTOFF) - pd.DateOffset(months=k) for k in range(n_windows + 2)]
    windows = []
    for k in range(1, n_windows + 1):
        window = or_customer_temporal(fct, test_cutoff=edges[k], validation_cutoff=edges[k + 1], test_end=edges[k - 1])
        if not np.array_equal(window.item_ids, split.item_ids):
            raise ValueError("an earlier window indexed the items differently from the protocol's split")
        started = time.perf_counter()
        sasrec, _ = train_sasrec(window.train_for_test, window.n_items, model,
                                 replace(train_config, epochs=options["sasrec_epochs"]), item_text_embeddings=text,
                                 train_timestamps=window.train_for_test_timestamps)
        models, _ = _stage_one(window, window.train_for_test, window.train_for_test_timestamps, text, options,
                               sasrec, time.perf_counter() - started)
        windows.append(_candidates(models, window.test, events, str(edges[k].date()), text, n_candidates))
    return windows


def _stack(parts: list[tuple[pd.DataFrame, np.ndarray]]) -> tuple[pd.DataFrame, np.ndarray]:
    """One training frame from several windows; each window's rows get their own group ids."""
    frames, offset = [], 0
    for rows, _ in parts:
        frames.append(rows.assign(row=rows["row"] + offset))
        offset += int(rows["row"].max()) + 1 if len(rows) else 0
    return pd.concat(frames, ignore_index=True), np.concatenate([labels for _, labels in parts])


def _dask_ranker(ranker_config: RankerConfig, train_rows: pd.DataFrame, labels: np.ndarray, columns: list[str],
                 test_rows: pd.DataFrame, split: Split, workers: int) -> tuple[dict, dict]:
    """(test metrics, fit figures) of the ranker grown on a local Dask cluster of ``workers`` from the same rows;
    the cluster's start and close count in its fit time, as they would in the asset."""
    started = time.perf_counter()
    ranker = fit_ranker(ranker_config, train_rows, labels, train_rows["row"].to_numpy(), columns,
                        DaskSettings(workers=workers))
    fit_s = time.perf_counter() - started
    topk = rerank_topk(test_rows, ranker.score(test_rows), len(split.test), max(KS))
    return ranking_metrics(topk, split.test.targets, KS), {
        "workers": workers, "fit_s": round(fit_s, 1), "best_iterations": ranker.best_iterations_,
        "held_out_ndcg@10": ranker.valid_ndcg_}


def run(protocol: str, data: Path, n_candidates: int, model: SASRecConfig, train_config: TrainConfig,
        ranker_config: RankerConfig, earlier_windows: int = 0, dask_workers: int = 0) -> dict:
    started = time.perf_counter()
    fct, items = _marts("online_retail", data)
    split = or_customer_temporal(fct)
    texts = build_item_texts(items)
    text = text_matrix(split, dict(zip(texts["item_id"].astype(str), texts["text"])))
    events = purchase_events(fct, split.item_ids)
    prepare_s = time.perf_counter() - started
    options = {"buy-again": pick_options(BuyAgain, BUY_AGAIN_GRID, split),
               "item-knn": pick_options(ItemKNN, ITEM_KNN_GRID, split)}

    # SASRec trains first for both phases; each run is seeded on its own, so the order does not change it.
    sasrec = _sasrec(split, text, model, train_config)
    options["sasrec_epochs"] = sasrec.selection.best_epoch

    # Phase 1: models before the validation cut-off -> labelled candidates -> the ranker.
    models, _ = _stage_one(split, split.train, split.train_timestamps, text, options, sasrec.selected,
                           sasrec.selection_s)
    train_rows, labels = _candidates(models, split.validation, events, OR_VALIDATION_CUTOFF, text, n_candidates)
    columns = ranker_feature_names(train_rows)
    candidate_recall_validation = candidate_recall(train_rows, split.validation.targets)
    if earlier_windows:
        train_rows, labels = _stack([(train_rows, labels), *_earlier_windows(
            fct, split, earlier_windows, events, text, options, model, train_config, n_candidates)])
    ranker_started = time.perf_counter()
    ranker = LambdaRanker(ranker_config).fit(train_rows, labels, train_rows["row"].to_numpy(), columns)
    ranker_s = time.perf_counter() - ranker_started

    # Phase 2: models before the test cut-off, the same number of SASRec epochs -> re-ranked test candidates.
    models, seconds = _stage_one(split, split.train_for_test, split.train_for_test_timestamps, text, options,
                                 sasrec.model, sasrec.refit_s)
    test_rows, _ = _candidates(models, split.test, events, OR_TEST_CUTOFF, text, n_candidates)
    results = {}
    for name, single in models.items():
        results[name] = {**evaluate(single.score, split.test, split.n_items, KS), "train_s": round(seconds[name], 1)}
    topk = rerank_topk(test_rows, ranker.score(test_rows), len(split.test), max(KS))
    results["sasrec+ranker"] = {**ranking_metrics(topk, split.test.targets, KS),
                                "train_s": round(seconds["sasrec"] + ranker_s, 1)}
    dask = {}
    if dask_workers:
        metrics, dask = _dask_ranker(ranker_config, train_rows, labels, columns, test_rows, split, dask_workers)
        results["sasrec+ranker-dask"] = {**metrics, "train_s": round(seconds["sasrec"] + dask["fit_s"], 1)}
    importance = ranker.feature_importance()
    return {
        "protocol": protocol,
        "data": str(data),
        "dataset": {"sequences": len(split.train_for_test), "items": split.n_items,
                    "interactions": int(sum(len(s) for s in split.train_for_test)), "test_rows": len(split.test)},
        "candidate_recall": candidate_recall(test_rows, split.test.targets),
        "candidate_recall_validation": candidate_recall_validation,
        "n_candidates": n_candidates,
        "ranker": {"objective": ranker_config.objective, "n_models": ranker_config.n_models,
                   "earlier_windows": earlier_windows,
                   "best_iterations": ranker.best_iterations_, "held_out_ndcg@10": ranker.valid_ndcg_,
                   "fit_s": round(ranker_s, 1), "dask": dask,
                   "training_rows": len(train_rows),
                   "positives": int(labels.sum()), "top_features": importance.head(10)["feature"].tolist()},
        "options": options,
        "sasrec_config": asdict(model),
        "prepare_s": round(prepare_s, 1),
        "models": results,
        **machine(),
    }


def print_report(figures: dict) -> None:
    print(f"\n{figures['protocol']}: {figures['dataset']}")
    print(f"candidate recall@{figures['n_candidates']}: test {figures['candidate_recall']:.4f}, "
          f"validation {figures['candidate_recall_validation']:.4f}; top features: {figures['ranker']['top_features']}")
    header = f"{'model':<20} {'R@10':>7} {'N@10':>7} {'R@50':>7} {'N@50':>7} {'train s':>8}"
    print(header)
    print("-" * len(header))
    for name, m in figures["models"].items():
        print(f"{name:<20} {m['recall@10']:>7.4f} {m['ndcg@10']:>7.4f} {m['recall@50']:>7.4f} {m['ndcg@50']:>7.4f} "
              f"{m['train_s']:>8.1f}")
    ranker, dask = figures["ranker"], figures["ranker"]["dask"]
    if dask:
        print(f"ranker fit: {ranker['fit_s']:.1f} s here (rounds {ranker['best_iterations']}), {dask['fit_s']:.1f} s "
              f"on {dask['workers']} local Dask workers (rounds {dask['best_iterations']}, cluster start included)")

RANKING_FLAGS = ("--hidden", "--patience", "--epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="or-customer-temporal")
    parser.add_argument("--data", default=str(SHARED_DATA / "online_retail" / "online_retail.csv.gz"))
    parser.add_argument("--candidates", type=int, default=DEFAULT_N_CANDIDATES,
                        help="candidates per customer, all sources together")
    model_defaults, train_defaults = RANKING_BENCHMARK.model, RANKING_BENCHMARK.train
    preset = "presets.RANKING_BENCHMARK"
    add_preset_flags(parser, RANKING_BENCHMARK, preset, RANKING_FLAGS)
    parser.add_argument("--device", default=train_defaults.device, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--item-to-item", action=argparse.BooleanOptionalAction, default=model_defaults.item_to_item,
                        help=f"SASRec's learned item-to-item matrix, SASRecConfig.item_to_item (default %(default)s, "
                             f"{preset})")
    parser.add_argument("--history-bias", action=argparse.BooleanOptionalAction, default=model_defaults.history_bias,
                        help="SASRec's logit offset for items already in the history, SASRecConfig.history_bias "
                             f"(default %(default)s, {preset})")
    parser.add_argument("--earlier-windows", type=int, default=2,
                        help="months before the validation month whose customers also train the ranker, each with "
                             "stage one refit on the data before it (0 = the validation month only)")
    parser.add_argument("--ranker-models", type=int, default=RankerConfig.n_models,
                        help="LambdaMART models averaged (RankerConfig.n_models)")
    parser.add_argument("--objective", default="lambdarank", choices=("lambdarank", "rank_xendcg"),
                        help="LightGBM ranking objective of the re-ranker")
    parser.add_argument("--dask-workers", type=int, default=0,
                        help="also train the ranker on a local Dask cluster of this many workers from the same rows "
                             "(0 = not)")
    args = parser.parse_args()
    model, train = configs_from_flags(args, RANKING_BENCHMARK, RANKING_FLAGS)
    model = replace(model, item_to_item=args.item_to_item, history_bias=args.history_bias)
    train = replace(train, device=args.device)
    ranker = RankerConfig(objective=args.objective, n_models=args.ranker_models)
    figures = run(args.protocol, Path(args.data), args.candidates, model, train, ranker, args.earlier_windows,
                  args.dask_workers)
    print_report(figures)
    emit_json(figures)


if __name__ == "__main__":
    main()
