"""Sequential recommender and baselines: the temporal split, SASRec tracked in MLflow, candidates, evaluation.

Every model is fit twice on one split: on ``split.train`` to score the validation rows (and to early-stop
SASRec), and on ``split.train_for_test`` to score the test rows. Models travel between assets as files under
``RECSYS_HOME/artifacts`` (``orchestration.store.model_files``); tables other tools read go to the warehouse's ``ml``
schema. Torch is imported inside the asset bodies, so loading the Definitions stays fast.
"""

import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, replace

import dagster as dg
import numpy as np
import pandas as pd
from dagster import AssetExecutionContext
from pydantic import Field

from orchestration.defs.resources import MLflowResource, WarehouseResource
from orchestration.registry.tracking import mlflow_metric_name
from orchestration.store.marts import mart_fingerprint, read_interactions
from orchestration.store.model_files import (
    StaleModelsError,
    load_phase_models,
    read_text_matrix,
    replaced_folder,
    write_lineage,
)
from orchestration.store.paths import ArtifactPaths
from orchestration.store.reports import (
    KS,
    sequence_rows,
    top_candidates,
)
from recmodels.metrics import evaluate
from recmodels.presets import PIPELINE
from recmodels.sequences import INPUTS, SequenceConfig, build_sequences, purchases
from recmodels.sizing import sasrec_for_sequences
from recmodels.splits import (
    LEAVE_LAST_BASKET_OUT,
    EvalSet,
    SplitRule,
    StoredSplit,
    choose_windows,
    last_basket_choice,
    leave_last_basket_out,
    load_split,
    save_split,
    sequence_cutoffs,
    split_cutoffs,
    split_problem,
    temporal_split,
)

REGISTERED_MODEL = "recsys-sasrec"
SEQUENCES_TABLE = "ml.user_sequences"
CANDIDATES_TABLE = "ml.candidate_scores"
TRACKING_FILE = "mlflow.json"  # written into the local model folder only, after the folder is registered


class UserSequencesConfig(dg.Config):
    key: str = Field(
        default=SequenceConfig.key,
        # Baskets rarely straddle a cut-off, so a temporal split of baskets has few evaluation rows.
        description="What a sequence is: 'user' (a customer's purchases) or 'basket'.",
    )
    max_length: int = Field(
        default=SequenceConfig.max_length,
        description="Most recent purchases a model reads per sequence (with browsing, SASRec reads the events around "
        "them, at most recmodels.sizing.BEHAVIOUR_MAX_LENGTH).",
    )
    collapse_repeats: bool = Field(
        default=SequenceConfig.collapse_repeats, description="Drop immediate repeats (a a b -> a b)."
    )
    test_days: int | None = Field(
        default=None,
        description="Test window: the last N calendar days of the data; null: chosen from the data by the split rule "
        "(SplitRule: the shortest windows that hold enough returning customers).",
    )
    validation_days: int | None = Field(
        default=None, description="Validation window: the N calendar days before the test window; null: as test_days."
    )
    split: str = Field(
        default="auto",
        description=f"'auto': the split rule decides (SplitRule); 'temporal': windows (test_days, or the rule's "
        f"lengths); '{LEAVE_LAST_BASKET_OUT}': each customer's last basket tests, the one before validates.",
    )
    seed: int = Field(default=SequenceConfig.seed, description="Seed of the order of events that share a timestamp.")
    inputs: str = Field(
        default=SequenceConfig.inputs,
        description="What the sequences hold: 'all' (every behaviour: views, carts and favourites as well as "
        "purchases) or 'purchases'. Targets are purchases either way.",
    )


SPLITS = ("auto", "temporal", LEAVE_LAST_BASKET_OUT)


@dg.asset(deps=[dg.AssetKey("fct_interactions")], group_name="models", kinds={"duckdb", "numpy"}, pool="user_sequences")
def user_sequences(
    context: AssetExecutionContext, config: UserSequencesConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Customers' behaviour sequences (purchases, and views, carts and favourites unless configured off) and the
    train / validation / test split every model shares; targets are purchases."""
    if config.inputs not in INPUTS:
        raise dg.Failure(f"user_sequences.config.inputs must be one of {INPUTS}, got {config.inputs!r}")
    with warehouse.connect(read_only=True) as con:
        events = read_interactions(con, of_known_customers=True)
        data_version = mart_fingerprint(con)["version"]
    bought = purchases(events)
    if bought.empty:
        raise dg.Failure("marts.fct_interactions holds no purchase of a known customer: there is nothing to split.")
    sequence_config = SequenceConfig(key=config.key, max_length=config.max_length,
                                     collapse_repeats=config.collapse_repeats, seed=config.seed, inputs=config.inputs)
    # Windows end at the last purchase: browsing after it has no purchase to evaluate.
    first, last = bought["occurred_at"].min(), bought["occurred_at"].max()
    choice = _windows(config, bought)
    (context.log.info if choice.get("enough", True) else context.log.warning)(choice["reason"])
    # Every sequence (not only training prefixes), for the inspection table and the per-customer cut-offs.
    sequences, keys, timestamps, _ = build_sequences(events, sequence_config)
    if choice["rule"] == LEAVE_LAST_BASKET_OUT:
        split = leave_last_basket_out(events, sequence_config, name=f"{config.key}-{LEAVE_LAST_BASKET_OUT}")
        validation_cutoff = test_cutoff = None  # each customer has their own
        period_cutoffs = sequence_cutoffs(split, keys)
    else:
        validation_cutoff, test_cutoff = split_cutoffs(last, choice["test_days"], choice["validation_days"])
        split = temporal_split(events, sequence_config, test_cutoff=test_cutoff, validation_cutoff=validation_cutoff,
                               name=f"{config.key}-temporal")
        period_cutoffs = (validation_cutoff, test_cutoff)
    problem = split_problem(split, len(bought), first, last, validation_cutoff, test_cutoff)
    if problem:
        raise dg.Failure(problem)
    cutoffs = {name: None if at is None else str(at)
               for name, at in (("validation_cutoff", validation_cutoff), ("test_cutoff", test_cutoff))}
    info = {
        "sequence_config": asdict(sequence_config), "data_version": data_version, **cutoffs,
        "first_event": str(first), "last_event": str(last), "split_rule": choice,
    }
    stored = StoredSplit(split, split.train_timestamps, split.train_for_test_timestamps, info)
    split_file = warehouse.artifacts.split_file
    content_hash = save_split(stored, split_file)
    rows = sequence_rows(sequences, keys, timestamps, split.item_ids, *period_cutoffs)
    warehouse.write_table(SEQUENCES_TABLE, rows)
    context.log.info(f"{len(sequences):,} sequences; {len(split.validation):,} validation and {len(split.test):,} test rows")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "sequences": len(sequences),
            "items": split.n_items,
            "interactions": len(rows),
            "train_sequences": len(split.train),
            "validation_rows": len(split.validation),
            "test_rows": len(split.test),
            "split_rule": choice["rule"],
            "split_reason": choice["reason"],
            "test_days": choice["test_days"],
            "validation_days": choice["validation_days"],
            "test_customers": len(split.test),
            "validation_customers": len(split.validation),
            "train_customers": len(split.train_for_test),
            "test_targets": int(sum(len(t) for t in split.test.targets)),
            "validation_targets": int(sum(len(t) for t in split.validation.targets)),
            "validation_cutoff": _cutoff_text(split.validation, cutoffs["validation_cutoff"]),
            "test_cutoff": _cutoff_text(split.test, cutoffs["test_cutoff"]),
            "last_event": str(last),
            "data_version": data_version,
            "split_hash": content_hash[:16],
            "split_file": dg.MetadataValue.path(str(split_file)),
            "table": SEQUENCES_TABLE,
        }
    )


def _cutoff_text(rows: EvalSet, cutoff: str | None) -> str:
    """A phase's cut-off for the metadata: its date, or the range of the rows' own ones."""
    if cutoff is not None:
        return str(pd.Timestamp(cutoff).date())
    if rows.cutoffs is None or not len(rows):
        return "none"
    return f"per customer, {pd.Timestamp(rows.cutoffs.min()).date()} to {pd.Timestamp(rows.cutoffs.max()).date()}"


def _windows(config: UserSequencesConfig, events: pd.DataFrame) -> dict:
    """The configured windows when set (explicit config wins), else the split rule's choice for this data."""
    if config.split not in SPLITS:
        raise dg.Failure(f"user_sequences.config.split must be one of {SPLITS}, got {config.split!r}")
    if config.split == LEAVE_LAST_BASKET_OUT:
        return last_basket_choice(events).as_info()
    if config.test_days is not None or config.validation_days is not None:
        test_days = config.test_days or config.validation_days
        validation_days = config.validation_days or test_days
        return {"rule": "temporal (configured)", "test_days": test_days, "validation_days": validation_days,
                "reason": f"Configured windows: {test_days} test days, {validation_days} validation days."}
    return choose_windows(events, SplitRule(leave_last_basket_out=config.split == "auto")).as_info()


def text_matrix(warehouse: WarehouseResource, item_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """The item-text matrix in internal-id order, and how many items have a text (``read_text_matrix``)."""
    with warehouse.connect(read_only=True) as con:
        return read_text_matrix(con, item_ids)


class SASRecModelConfig(dg.Config):
    # Defaults: the library's PIPELINE preset; the fields left null are sized to the shop's training events
    # (recmodels.sizing.SASREC_SIZES, the README's table). A value given here wins.
    epochs: int | None = Field(
        default=None,
        description="Upper bound on epochs; early stopping on validation NDCG@10 may end sooner. Null: sized to the data.",
    )
    hidden_size: int | None = Field(
        default=None, description="Width of item, position and hidden vectors; null: sized to the data."
    )
    num_layers: int = Field(default=PIPELINE.model.num_layers, description="Transformer blocks.")
    num_heads: int = Field(default=PIPELINE.model.num_heads, description="Attention heads (must divide hidden_size).")
    dropout: float = Field(default=PIPELINE.model.dropout, description="Dropout rate.")
    lr: float | None = Field(default=None, description="Peak AdamW learning rate; null: sized to the data.")
    warmup_steps: int | None = Field(
        default=None, description="Optimizer steps of linear learning-rate warm-up; null: sized to the data."
    )
    batch_size: int | None = Field(default=None, description="Training sequences per step; null: sized to the data.")
    patience: int | None = Field(
        default=None,
        description="Stop after this many epochs without a better validation NDCG@10; null: sized to the data.",
    )
    item_text: str = Field(
        default=PIPELINE.model.item_text, description="Item representation: id, text or id+text (text-aware)."
    )
    item_to_item: bool | None = Field(
        default=None,
        description="Add a learned item-to-item matrix to the Transformer's scores; null: on for catalogues up to "
        "5,000 items (it holds and updates a weight per item pair; true allows up to 20,000).",
    )
    # Off: customers re-buy, the offset does not lift SASRec on customer sequences, and on the demo's shop it
    # lowered the re-ranked NDCG@10 from 0.4277 to 0.3942. It is for basket or session sequences.
    history_bias: bool = Field(
        default=PIPELINE.model.history_bias,
        description="Learn a logit offset for items already in the history (shared plus per item): a penalty where "
        "lines rarely repeat (baskets, sessions), a bonus where customers re-buy. One weight per item.",
    )
    set_targets: bool = Field(
        default=PIPELINE.train.set_targets,
        description="Train each position against every unseen item of the next basket, not only the one recorded "
        "next (items bought at one time have no true order).",
    )
    device: str | None = Field(
        default=PIPELINE.train.device, description="cpu, cuda, cuda:1...; null: CUDA when available."
    )
    num_threads: int | None = Field(
        default=None, description="CPU threads for training; null: sized to the data (one for a small shop, else "
        "every core)."
    )
    seed: int = Field(default=PIPELINE.train.seed, description="Seed of init, shuffling and dropout.")
    processes: int = Field(
        default=PIPELINE.train.processes,
        description="Data-parallel training processes on this machine (DistributedDataParallel: gloo on CPUs, NCCL on "
        "GPUs, one GPU each); each batch is shared among them, so the model is one process's up to float rounding "
        "and dropout draws. 1: one process.",
    )

    def to_configs(self, stored: StoredSplit, text_dim: int | None):
        """The library's configs for this run on ``stored``; ``text_dim`` is None when there is no text matrix.
        Fields left null come from ``sasrec_for_sequences`` of the sequences the test model trains on."""
        split = stored.split
        sized = sasrec_for_sequences(split.train_for_test, split.n_items, stored.info["sequence_config"]["max_length"])
        item_to_item = sized.model.item_to_item if self.item_to_item is None else self.item_to_item

        def chosen(name: str, part) -> object:
            value = getattr(self, name)
            return getattr(part, name) if value is None else value

        model = replace(
            sized.model, hidden_size=chosen("hidden_size", sized.model), num_layers=self.num_layers,
            num_heads=self.num_heads, dropout=self.dropout, item_text=self.item_text,
            item_to_item=item_to_item, history_bias=self.history_bias,
            **({} if text_dim is None else {"text_dim": text_dim}),
        )
        train = replace(
            sized.train, epochs=chosen("epochs", sized.train), lr=chosen("lr", sized.train),
            warmup_steps=chosen("warmup_steps", sized.train), batch_size=chosen("batch_size", sized.train),
            patience=chosen("patience", sized.train), device=self.device,
            num_threads=chosen("num_threads", sized.train), seed=self.seed, set_targets=self.set_targets,
            show_progress=sys.stderr.isatty(), processes=self.processes,
        )
        return model, train


def _checkpoint_key(stored: StoredSplit, model_config, train_config) -> str:
    """Same split and settings -> same checkpoints, so a rerun after a crash resumes instead of starting over."""
    loose = {"device", "num_threads", "show_progress", "processes"}
    settings = {"split": stored.content_hash, "model": asdict(model_config),
                "train": {k: v for k, v in asdict(train_config).items() if k not in loose}}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _log_epochs(client, run_id: str, selection, refit) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(mlflow_metric_name("train", "loss"), r["loss"], now, r["epoch"]) for r in selection.epochs]
    metrics += [Metric(mlflow_metric_name("val", "ndcg@10"), r["val_ndcg@10"], now, r["epoch"])
                for r in selection.epochs if r["val_ndcg@10"] is not None]
    metrics += [Metric(mlflow_metric_name("train", "refit_loss"), r["loss"], now, r["epoch"]) for r in refit.epochs]
    for start in range(0, len(metrics), 1000):  # MLflow's cap per batch
        client.log_batch(run_id, metrics=metrics[start:start + 1000])


SASREC_RUN_DESCRIPTION = (
    "SASRec on the customers' purchase sequences: trained on the training window and early-stopped on the "
    "validation window's NDCG@10 (train/, val/), then refit on training + validation for the chosen number of "
    "epochs and scored once on the test window (test/). Full ranking over the whole catalogue."
)


def _sasrec_params(model_config, train_config, stored, items_with_text: int) -> dict:
    """What an MLflow run of SASRec records as parameters: model, training and split settings."""
    return {
        **{f"model.{k}": v for k, v in asdict(model_config).items()},
        **{f"train.{k}": v for k, v in asdict(train_config).items() if k != "show_progress"},
        **{f"split.{k}": v for k, v in stored.info.items() if k not in ("sequence_config", "split_rule")},
        **{f"split.rule.{k}": v for k, v in stored.info.get("split_rule", {}).items() if k != "tried"},
        "split.key": stored.info["sequence_config"]["key"], "split.hash": stored.content_hash[:16],
        "items": stored.split.n_items, "items_with_text": items_with_text,
    }


@dg.asset(deps=[user_sequences, dg.AssetKey("item_embeddings")], group_name="models", kinds={"pytorch", "mlflow"},
          pool="sasrec_model")
def sasrec_model(
    context: AssetExecutionContext, config: SASRecModelConfig, warehouse: WarehouseResource, mlflow: MLflowResource
) -> dg.MaterializeResult:
    """Text-aware SASRec: early-stopped on validation, refit up to the best epoch, registered in MLflow."""
    import mlflow as mlflow_api

    from recmodels import sasrec
    from recmodels.training import fit_then_refit

    paths = warehouse.artifacts
    stored = load_split(paths.split_file)
    split = stored.split
    text, items_with_text = text_matrix(warehouse, split.item_ids) if config.item_text != "id" else (None, 0)
    model_config, train_config = config.to_configs(stored, None if text is None else text.shape[1])
    context.log.info(f"SASRec: hidden {model_config.hidden_size}, lr {train_config.lr}, batch "
                     f"{train_config.batch_size}, up to {train_config.epochs} epochs")
    checkpoints = paths.checkpoint_dir(_checkpoint_key(stored, model_config, train_config))

    def validate(model) -> float:
        return evaluate(model.score, split.validation, split.n_items, (10,))["ndcg@10"]

    data_version = stored.info["data_version"]
    tags = {"data_version": data_version, "dagster_run_id": context.run_id, "split": split.name}
    with mlflow.start_run("sasrec", tags=tags, description=SASREC_RUN_DESCRIPTION) as run:
        mlflow.log_data_version(warehouse.warehouse().dataset_uri, "marts.fct_interactions", data_version, context="training")
        mlflow_api.log_params(_sasrec_params(model_config, train_config, stored, items_with_text))
        # Timestamps let training re-draw the arbitrary order of items bought in one basket at one time. The refit
        # sees one more month of data for exactly as many epochs as validation chose: no test peeking.
        fit = fit_then_refit(split.train, split.train_for_test, split.n_items, model_config, train_config, validate,
                             item_text_embeddings=text, checkpoint_dir=checkpoints,
                             train_timestamps=stored.train_times, refit_timestamps=stored.train_for_test_times)
        selected, model, selection, refit = fit.selected, fit.model, fit.selection, fit.refit
        train_s = fit.selection_s + fit.refit_s
        test = evaluate(model.score, split.test, split.n_items, KS)
        client = mlflow.client()
        _log_epochs(client, run.info.run_id, selection, refit)
        mlflow_api.log_metrics({
            mlflow_metric_name("train", "best_epoch"): selection.best_epoch,
            mlflow_metric_name("train", "refit_epochs"): len(refit.epochs),
            mlflow_metric_name("train", "time_to_best_s"): selection.time_to_best_s,
            mlflow_metric_name("train", "seconds"): train_s,
            mlflow_metric_name("val", "best_ndcg@10"): selection.best_metric,
        } | {mlflow_metric_name("test", k): v for k, v in test.items()})
        with replaced_folder(paths.sasrec_dir("validation")) as folder:
            sasrec.save(selected, folder, split.item_ids)
            write_lineage(folder, stored)
        with replaced_folder(paths.sasrec_dir("test")) as folder:
            sasrec.save(model, folder, split.item_ids)
            write_lineage(folder, stored)
            version = mlflow.register_folder(run, folder, REGISTERED_MODEL, tags={"data_version": data_version})
            tracking = {"run_id": run.info.run_id, "model": REGISTERED_MODEL, "version": int(version.version)}
            (folder / TRACKING_FILE).write_text(json.dumps(tracking, indent=2) + "\n")
    shutil.rmtree(checkpoints, ignore_errors=True)  # checkpoints only exist to survive a crash
    device = str(model.device)
    context.log.info(f"SASRec: best epoch {selection.best_epoch}, test NDCG@10 {test['ndcg@10']:.4f}, "
                     f"{REGISTERED_MODEL} version {version.version}")
    return dg.MaterializeResult(
        metadata={
            "mlflow_run": mlflow.run_link(run),
            "mlflow_run_id": run.info.run_id,
            "model_version": int(version.version),
            "registered_model": REGISTERED_MODEL,
            "registered_version": mlflow.model_version_link(REGISTERED_MODEL, version.version),
            "best_epoch": selection.best_epoch,
            "epochs_run": len(selection.epochs),
            "best_val_ndcg@10": selection.best_metric,
            "time_to_best_s": round(selection.time_to_best_s, 2),
            "train_s": round(train_s, 2),
            "test_ndcg@10": test["ndcg@10"],
            "test_recall@10": test["recall@10"],
            "test_rows": int(test["n_rows"]),
            "device": device,
            "item_text": model_config.item_text,
            "items_with_text": items_with_text,
            "data_version": data_version,
            "model_folder": dg.MetadataValue.path(str(paths.sasrec_dir("test"))),
        }
    )


def phase_models(paths: ArtifactPaths, stored: StoredSplit, phase: str) -> dict:
    """Every model of ``phase`` by name, SASRec first; a Dagster failure for models fit on another split."""
    try:
        return load_phase_models(paths, stored, phase)
    except StaleModelsError as error:
        raise dg.Failure(str(error)) from error


class CandidateScoresConfig(dg.Config):
    top_k: int = Field(default=100, description="Candidates per customer and source.")


@dg.asset(deps=[sasrec_model, dg.AssetKey("baseline_models")], group_name="models", kinds={"duckdb"},
          pool="candidate_scores")
def candidate_scores(
    context: AssetExecutionContext, config: CandidateScoresConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Top-K items per test customer from SASRec and every baseline, one long table for the re-ranker."""
    paths = warehouse.artifacts
    stored = load_split(paths.split_file)
    models = phase_models(paths, stored, "test")
    split = stored.split
    candidates = pd.concat(
        [top_candidates(name, model.score, split.test, split.item_ids, config.top_k) for name, model in models.items()],
        ignore_index=True,
    )
    warehouse.write_table(CANDIDATES_TABLE, candidates)
    context.log.info(f"{len(candidates):,} candidates from {len(models)} sources")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(candidates),
            "rows": len(candidates),
            "users": int(candidates["sequence_key"].nunique()),
            "sources": dg.MetadataValue.json(list(models)),
            "top_k": int(candidates["rank"].max()),
            "table": CANDIDATES_TABLE,
        }
    )


model_assets = [user_sequences, sasrec_model, candidate_scores]
