"""Sequential recommenders against baselines on one protocol, full ranking, from the raw data.

    python -m benchmarks.sequential --protocol or-session --data ../shared/data/online_retail/online_retail.parquet
    python -m benchmarks.sequential --protocol or-session-fileorder --data ../shared/data/online_retail/online_retail.parquet
    python -m benchmarks.sequential --protocol or-customer-temporal --data ../shared/data/online_retail/online_retail.csv.gz
    python -m benchmarks.sequential --protocol generic-loo --data PATH/TO/GENERIC/FOLDER
    python -m benchmarks.sequential --protocol pipeline --data RECSYS_HOME

``pipeline`` reads the split and the item embeddings a ``recsys materialize`` left in a home, so a configuration
is measured on exactly the rows the pipeline's SASRec was.

Every model is scored twice on the test rows: with the history's own items allowed, and excluded. Baselines
with options (buy-again, item-kNN) pick them on the validation rows; SASRec stops early on validation NDCG@10. Add
``--ablation`` for the ID-only and text-only SASRec variants (and, where the item-to-item matrix is on, for the
model without it). ``--nproc N`` trains SASRec data-parallel in N processes that the benchmark launches
itself (``recmodels.distributed``); under ``torchrun -m benchmarks.sequential`` each process runs the
benchmark, trains as one rank of torchrun's group, and rank 0 alone prints. The defaults are the best
configuration measured (``recmodels.presets.SEQUENTIAL_BENCHMARK``): text-aware, hidden 256, the history offset,
and the item-to-item matrix on or-customer-temporal only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import SHARED_DATA, add_preset_flags, configs_from_flags, emit_json, machine
from recmodels import distributed
from recmodels.baselines import (
    BUY_AGAIN_GRID,
    ITEM_KNN_GRID,
    BuyAgain,
    ItemKNN,
    MostPopular,
    RecentPopular,
    TextKNN,
)
from recmodels.baselines import pick_options as recmodels_pick_options
from recmodels.item_text import build_item_texts
from recmodels.metrics import evaluate
from recmodels.presets import PIPELINE, SEQUENTIAL_BENCHMARK, SASRecConfig, TrainConfig
from recmodels.protocols import generic_loo, or_customer_temporal, or_session
from recmodels.splits import Split
from recmodels.text_encoder import EncoderConfig, load_encoder
from recmodels.training import fit_then_refit

PROTOCOLS = ("or-session", "or-session-fileorder", "or-customer-temporal", "generic-loo", "pipeline")
KS = (10, 20, 50)
COLD_MAX_TRAIN_EVENTS = 10  # items with at most this many training events count as cold


def _read_raw(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"InvoiceNo": str, "Invoice": str, "StockCode": str})


def _marts(kind: str, data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ingest + dbt on ``data`` into a scratch RECSYS_HOME and read fct_interactions and dim_items."""
    import dagster as dg
    import duckdb

    from orchestration.apps.runner import materialize
    from orchestration.defs.resources import DataSourceResource, WarehouseResource

    home = Path(tempfile.mkdtemp(prefix="recsys-seq-"))
    resources = {"warehouse": WarehouseResource(home=str(home)), "data_source": DataSourceResource(source=kind, data=str(data))}
    materialize("group:ingest or group:transforms", resources=resources, instance=dg.DagsterInstance.ephemeral(),
                log_level="WARNING", stdout_log=home / "dbt.log")
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select * from marts.fct_interactions").df(), con.execute("select * from marts.dim_items").df()


def load_protocol(protocol: str, data: Path) -> tuple[Split, dict[str, str]]:
    """The split and each item's text (external id -> text)."""
    if protocol.startswith("or-session"):
        raw = _read_raw(data)
        split, _ = or_session(raw, file_order=protocol.endswith("fileorder"))
        descriptions = raw.assign(Description=raw["Description"].astype("string").str.strip()).dropna(subset=["Description"])
        # The most frequent description of a stock code, as dim_items would choose it.
        titles = (
            descriptions.groupby(["StockCode", "Description"]).size().rename("n").reset_index()
            .sort_values(["StockCode", "n", "Description"], ascending=[True, False, True])
            .drop_duplicates("StockCode")
        )
        items = pd.DataFrame({"item_id": titles["StockCode"].astype(str), "title": titles["Description"]})
    else:
        fct, items = _marts("online_retail" if protocol == "or-customer-temporal" else "generic", data)
        split = or_customer_temporal(fct) if protocol == "or-customer-temporal" else generic_loo(fct)
    texts = build_item_texts(items)
    return split, dict(zip(texts["item_id"].astype(str), texts["text"]))


def load_pipeline(home: Path) -> tuple[Split, np.ndarray]:
    """The split and the item-text matrix (internal-id order) the pipeline stored in ``home``."""
    import duckdb

    from orchestration.store.model_files import read_text_matrix
    from orchestration.store.paths import recsys_paths
    from recmodels.splits import load_split

    paths = recsys_paths(str(home))
    stored = load_split(paths.artifacts.split_file)
    split = replace(stored.split, train_timestamps=stored.train_times, train_for_test_timestamps=stored.train_for_test_times)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return split, read_text_matrix(con, split.item_ids)[0]


def text_matrix(split: Split, texts: dict[str, str], encoder_model: str | None = None) -> np.ndarray:
    """(n_items + 1, d) item text embeddings in internal-id order; row 0 (padding) and text-less items are zero."""
    encoder = load_encoder(EncoderConfig(model=encoder_model))
    item_texts = [texts.get(str(item), "") for item in split.item_ids]
    vectors = encoder.encode(item_texts, show_progress=True)
    vectors[np.array([not text for text in item_texts])] = 0.0
    return np.vstack([np.zeros((1, vectors.shape[1]), dtype=np.float32), vectors])


def _evaluate_both(scorer, split: Split, cold: np.ndarray) -> dict:
    allowed = evaluate(scorer, split.test, split.n_items, KS, exclude_history=False, cold_items=cold)
    excluded = evaluate(scorer, split.test, split.n_items, KS, exclude_history=True, cold_items=cold)
    return {**allowed, "excluded": excluded}


def pick_options(model_class, grid, split: Split) -> dict:
    """The options of ``grid`` with the best validation NDCG@10, models fit on the validation-time training data."""
    return recmodels_pick_options(model_class, grid, split.train, split.validation, split.n_items)[0]


def pipeline_configs(split: Split, protocol: str, device: str | None = None) -> tuple[SASRecConfig, TrainConfig]:
    """The configs the pipeline's ``sasrec_model`` would train on ``split`` with its defaults: sized to the
    training events (``recmodels.sizing``), the item-to-item matrix on up to its catalogue limit, where the protocol
    holds out whole later baskets as the pipeline's splits do (``item_to_item_default``)."""
    from recmodels.sizing import sasrec_for_sequences

    preset = sasrec_for_sequences(split.train_for_test, split.n_items, PIPELINE.model.max_length)
    item_to_item = preset.model.item_to_item and item_to_item_default(protocol)
    return replace(preset.model, item_to_item=item_to_item), replace(preset.train, device=device)


def run(protocol: str, data: Path, ablation: bool, model: SASRecConfig | None, train: TrainConfig,
        encoder_model: str | None = None) -> dict:
    """Every model on ``protocol``; SASRec with ``model`` and ``train``, or with the pipeline's data-sized
    defaults when ``model`` is None."""
    started = time.perf_counter()
    if protocol == "pipeline":
        split, embeddings = load_pipeline(data)
    else:
        split, texts = load_protocol(protocol, data)
        embeddings = text_matrix(split, texts, encoder_model)
    prepare_s = time.perf_counter() - started
    if model is None:
        model, sized = pipeline_configs(split, protocol, train.device)
        train = replace(sized, processes=train.processes)
        print(f"data-sized SASRec: hidden {model.hidden_size}, lr {train.lr}, batch {train.batch_size}, "
              f"item-to-item {model.item_to_item}", flush=True)
    counts = np.bincount(np.concatenate(split.train_for_test), minlength=split.n_items + 1)
    cold = np.flatnonzero(counts[1:] <= COLD_MAX_TRAIN_EVENTS) + 1
    results: dict[str, dict] = {}

    def baseline(name: str, build: Callable[[list[np.ndarray]], object]) -> None:
        fit_started = time.perf_counter()
        model = build(split.train_for_test)
        fit_s = time.perf_counter() - fit_started
        results[name] = {**_evaluate_both(model.score, split, cold), "train_s": round(fit_s, 1)}
        print(f"{name:<22} N@10 {results[name]['ndcg@10']:.4f}  excluded {results[name]['excluded']['ndcg@10']:.4f}", flush=True)

    baseline("popularity", lambda train: MostPopular().fit(train, split.n_items))
    baseline("recent-popularity", lambda train: RecentPopular().fit(train, split.n_items))
    buy_again_options = pick_options(BuyAgain, BUY_AGAIN_GRID, split)
    baseline("buy-again", lambda train: BuyAgain(**buy_again_options).fit(train, split.n_items))
    results["buy-again"]["options"] = buy_again_options
    item_knn_options = pick_options(ItemKNN, ITEM_KNN_GRID, split)
    baseline("item-knn", lambda train: ItemKNN(**item_knn_options).fit(train, split.n_items))
    results["item-knn"]["options"] = item_knn_options
    baseline("text-knn", lambda train: TextKNN().fit(train, split.n_items, embeddings))

    # Leave-one-out adds one item per sequence between validation and test, not worth a second training.
    refit = protocol in ("or-customer-temporal", "pipeline")
    variants = {"sasrec": {}}
    if ablation:
        variants |= {"sasrec-id": {"item_text": "id"}, "sasrec-text": {"item_text": "text", "item_to_item": False}}
        if model.item_to_item:
            variants["sasrec-no-item-to-item"] = {"item_to_item": False}
    for name, changes in variants.items():
        config = replace(model, **changes)

        def validate(model) -> float:
            return evaluate(model.score, split.validation, split.n_items, (10,))["ndcg@10"]

        fit_started = time.perf_counter()
        text = embeddings if config.uses_text else None
        # A temporal test window starts a month after the validation one: refit on that month too, for the epoch
        # count validation chose (the baselines are likewise fit on train_for_test).
        fit = fit_then_refit(split.train, split.train_for_test if refit else None, split.n_items, config, train,
                             validate, item_text_embeddings=text, train_timestamps=split.train_timestamps,
                             refit_timestamps=split.train_for_test_timestamps)
        trained, history = fit.model, fit.selection
        results[name] = {
            **_evaluate_both(trained.score, split, cold),
            "train_s": round(time.perf_counter() - fit_started, 1),
            "time_to_best_s": round(history.time_to_best_s, 1),
            "best_epoch": history.best_epoch,
            "best_val_ndcg@10": history.best_metric,
            "epochs_run": len(history.epochs),
            "epochs": [{key: round(value, 4) if isinstance(value, float) else value for key, value in epoch.items()}
                       for epoch in history.epochs],
            "refit_on_train_for_test": refit,
            "device": str(trained.device),
            "processes": distributed.world_size(train.processes),
            "config": {"item_text": config.item_text, "item_to_item": config.item_to_item,
                       "hidden_size": config.hidden_size, "num_layers": config.num_layers, "num_heads": config.num_heads,
                       "dropout": config.dropout, "history_bias": config.history_bias, "lr": train.lr, "batch_size": train.batch_size,
                       "shuffle_ties": train.shuffle_ties and split.train_timestamps is not None,
                       "set_targets": train.set_targets and split.train_timestamps is not None},
        }
        print(f"{name:<22} N@10 {results[name]['ndcg@10']:.4f}  excluded {results[name]['excluded']['ndcg@10']:.4f}", flush=True)

    return {
        "protocol": protocol,
        "data": str(data),
        "dataset": {
            "sequences": len(split.train_for_test),
            "items": split.n_items,
            "interactions": int(sum(len(s) for s in split.train_for_test) + sum(len(t) for t in split.test.targets)),
            "test_rows": len(split.test.targets),
            "cold_items": len(cold),
        },
        "encoder": encoder_model or "all-MiniLM-L6-v2 (packaged)",
        "prepare_s": round(prepare_s, 1),
        "models": results,
        **machine(),
    }


def item_to_item_default(protocol: str) -> bool:
    """W learns which items a customer buys in later orders, the temporal protocol's targets. Where the target is
    mostly a line of the basket the history ends in (invoices, leave-one-out), W memorises co-occurrence, peaks
    within a few epochs and lowers validation NDCG (BENCHMARKS.md, 2026-12-01)."""
    return protocol in ("or-customer-temporal", "pipeline")


def print_report(figures: dict) -> None:
    print(f"\n{figures['protocol']}: {figures['dataset']}")
    header = f"{'model':<20} {'R@10':>7} {'N@10':>7} {'R@50':>7} {'N@50':>7} | {'excluded: R@10':>15} {'N@10':>7} {'R@50':>7} {'N@50':>7} | {'cold N@10':>9} {'train s':>8}"
    print(header)
    print("-" * len(header))
    for name, m in figures["models"].items():
        x = m["excluded"]
        print(f"{name:<20} {m['recall@10']:>7.4f} {m['ndcg@10']:>7.4f} {m['recall@50']:>7.4f} {m['ndcg@50']:>7.4f} | "
              f"{x['recall@10']:>15.4f} {x['ndcg@10']:>7.4f} {x['recall@50']:>7.4f} {x['ndcg@50']:>7.4f} | "
              f"{m.get('cold/ndcg@10', float('nan')):>9.4f} {m['train_s']:>8.1f}")
    for name, m in figures["models"].items():
        if "epochs" in m:
            losses = " ".join(f"{epoch['loss']:.4f}" for epoch in m["epochs"])
            print(f"{name} trained in {m['processes']} process(es) on {m['device']}: {m['train_s']:.1f} s, "
                  f"loss by epoch {losses}")

SEQUENTIAL_FLAGS = ("--epochs", "--patience", "--hidden", "--layers", "--heads", "--dropout", "--lr", "--batch", "--warmup", "--windows",
                    "--max-length", "--item-to-item-decay",
                    "--item-to-item-lr-scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="or-session")
    parser.add_argument("--data", default=str(SHARED_DATA / "online_retail" / "online_retail.parquet"))
    parser.add_argument("--ablation", action="store_true", help="also train the ID-only and text-only SASRec")
    model_defaults, train_defaults = SEQUENTIAL_BENCHMARK.model, SEQUENTIAL_BENCHMARK.train
    preset = "presets.SEQUENTIAL_BENCHMARK"
    add_preset_flags(parser, SEQUENTIAL_BENCHMARK, preset, SEQUENTIAL_FLAGS)
    parser.add_argument("--no-shuffle-ties", action="store_true", help="keep the recorded order of tied events")
    parser.add_argument("--no-set-targets", action="store_true",
                        help="score each position against the next item only, not the rest of its timestamp group")
    parser.add_argument("--item-to-item", action=argparse.BooleanOptionalAction, default=None,
                        help="add the learned item-to-item matrix to the Transformer's scores "
                             "(SASRecConfig.item_to_item); default: on for or-customer-temporal only, off where "
                             "the target shares a basket with the history's end (it overfits there)")
    parser.add_argument("--history-bias", action=argparse.BooleanOptionalAction, default=model_defaults.history_bias,
                        help="learn a logit offset for items already in the history, SASRecConfig.history_bias "
                             f"(default %(default)s, {preset})")
    parser.add_argument("--device", default=train_defaults.device, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--nproc", type=int, default=1,
                        help="SASRec training processes, launched here (DistributedDataParallel: gloo on CPUs, NCCL "
                             "with a GPU each); each batch of --batch is shared among them (default %(default)s)")
    parser.add_argument("--sized", action="store_true",
                        help="train SASRec with the pipeline's data-sized defaults (recmodels.sizing) instead of the "
                             "preset and the flags above; the item-to-item matrix as --item-to-item's default")
    parser.add_argument("--encoder", default=None,
                        help="item-text encoder: a Hugging Face model name or local folder (default: the packaged MiniLM)")
    args = parser.parse_args()
    item_to_item = item_to_item_default(args.protocol) if args.item_to_item is None else args.item_to_item
    model, train = configs_from_flags(args, SEQUENTIAL_BENCHMARK, SEQUENTIAL_FLAGS)
    model = replace(model, item_to_item=item_to_item, history_bias=args.history_bias)
    train = replace(train, device=args.device, shuffle_ties=train_defaults.shuffle_ties and not args.no_shuffle_ties,
                    set_targets=train_defaults.set_targets and not args.no_set_targets, processes=args.nproc)
    figures = run(args.protocol, Path(args.data), args.ablation, None if args.sized else model, train, args.encoder)
    if distributed.rank() == 0:  # under torchrun every rank ran the benchmark; one report is enough
        print_report(figures)
        emit_json(figures)


if __name__ == "__main__":
    main()
