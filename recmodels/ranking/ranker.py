"""The LightGBM LambdaRank re-ranker: its settings, fit, scores, save/load (LightGBM text plus JSON, never
pickled) and the top-k it re-ranks the candidates into."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from recmodels.ranking.compiled import CompiledModel, compile_model
from recmodels.ranking.features import feature_columns
from recmodels.sequences import PAD

FORMAT_VERSION = 2  # of ranker.json; bump when its fields change meaning (1: one model in ranker.txt)
# Below this many rows ``score`` predicts on one thread: OpenMP's start-up and spin-waiting cost more than a second
# thread saves (on a busy 2-core machine, 100 rows took 40 ms of CPU on two threads and 2 ms on one).
SINGLE_THREAD_ROWS = 20_000
# Grows one model of the ensemble another way (recmodels.ranking.distributed): (LightGBM params, training rows,
# held-out rows or None) -> (booster, rounds kept, held-out NDCG@eval_at or None); rows are (x, labels, group sizes).
MemberTrainer = Callable[[dict, tuple, tuple | None], tuple[lgb.Booster, int, float | None]]


@dataclass(frozen=True)
class RankerConfig:
    """LightGBM LambdaRank settings; the defaults suit ~1k users x 100 candidates."""

    objective: str = "lambdarank"  # pairwise loss weighted by the NDCG change of swapping two items
    n_estimators: int = 1000  # boosting rounds at most; early stopping usually ends far sooner
    learning_rate: float = 0.05  # shrinkage per tree
    num_leaves: int = 31  # leaves per tree
    min_data_in_leaf: int = 50  # rows per leaf at least; guards against fitting single users
    feature_fraction: float = 0.9  # share of features each tree may use
    early_stopping_rounds: int = 50  # stop after this many rounds without held-out NDCG gain
    valid_fraction: float = 0.2  # share of rows (users), not of candidates, held out for early stopping
    eval_at: int = 10  # K of the held-out NDCG@K
    # Models averaged, each early-stopped on its own held-out users (seed + i): together they learn from every user,
    # and the average is steadier than one model (on Online Retail, 5 models +0.008 NDCG@10; BENCHMARKS.md).
    n_models: int = 5
    seed: int = 42  # held-out split and every LightGBM random choice of the first model
    deterministic: bool = True  # same data + same threads -> same model
    num_threads: int = 0  # 0 = LightGBM's default (OpenMP's thread count)

    def lightgbm_params(self, seed: int | None = None) -> dict:
        return {
            "objective": self.objective,
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "seed": self.seed if seed is None else seed,
            "deterministic": self.deterministic,
            # LightGBM's docs: deterministic results also need a fixed histogram layout.
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }


def _matrix(features: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    missing = [name for name in feature_names if name not in features.columns]
    if missing:
        raise ValueError(f"features lack columns the ranker needs: {missing}")
    return features[feature_names].to_numpy(np.float64)


@dataclass
class LambdaRanker:
    """An average of ``config.n_models`` LightGBM LambdaRank models over candidate features, one query group per
    evaluation row; model i holds out its own users (seed ``config.seed + i``) for early stopping.

    Groups without any positive carry no ranking signal (every order has NDCG 0), so ``fit`` drops them and
    counts them in ``n_groups_dropped_``. The held-out NDCG is therefore over rows whose candidates hold a
    target: an upper bound of the end-to-end NDCG, which also pays for the candidates' misses.
    """

    config: RankerConfig = field(default_factory=RankerConfig)
    feature_names: list[str] = field(default_factory=list, init=False)
    boosters_: list[lgb.Booster] = field(default_factory=list, init=False, repr=False)
    best_iterations_: list[int] = field(default_factory=list, init=False)  # rounds kept per model (1-based)
    valid_ndcg_: float = field(default=float("nan"), init=False)  # mean held-out NDCG@eval_at at the best rounds
    n_groups_dropped_: int = field(default=0, init=False)  # groups without a positive, left out of training
    model_files_: list[Path] = field(default_factory=list, init=False, repr=False)  # where load read each model
    # Per model, its compiled twin (``compile``) or None where LightGBM scores it; empty before ``compile``.
    compiled_: list[CompiledModel | None] = field(default_factory=list, init=False, repr=False)

    def fit(
        self, features: pd.DataFrame, labels: np.ndarray, rows: np.ndarray, feature_names: list[str],
        trainer: MemberTrainer | None = None,
    ) -> LambdaRanker:
        """Trains on ``features[feature_names]``; ``labels`` 0/1 and ``rows`` (group id) per feature row.
        ``trainer``, when given, grows each model on the same rows, split and params (else ``lgb.train`` here)."""
        if self.config.n_models < 1:
            raise ValueError(f"n_models must be >= 1, got {self.config.n_models}")
        x = _matrix(features, list(feature_names))
        labels = np.asarray(labels)
        rows = np.asarray(rows)
        if not (len(labels) == len(rows) == len(x)):
            raise ValueError(f"{len(x)} feature rows, {len(labels)} labels, {len(rows)} group ids")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be 0 or 1")
        if labels.sum() == 0:
            raise ValueError("no positive label at all: nothing to rank (are the targets in the candidates?)")
        order = np.argsort(rows, kind="stable")  # LightGBM wants each group's rows contiguous
        x, labels, rows = x[order], labels[order].astype(np.float64), rows[order]
        groups, starts, sizes = np.unique(rows, return_index=True, return_counts=True)
        has_positive = np.add.reduceat(labels, starts) > 0
        self.n_groups_dropped_ = int((~has_positive).sum())
        kept_groups = np.flatnonzero(has_positive)
        group_of_row = np.repeat(np.arange(len(groups)), sizes)

        def dataset(chosen: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
            mask = np.isin(group_of_row, chosen)
            return lgb.Dataset(
                x[mask],
                label=labels[mask],
                group=sizes[chosen],
                feature_name=list(feature_names),
                reference=reference,
                params={"verbosity": -1},
            )

        def grouped(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # what a trainer is given
            mask = np.isin(group_of_row, chosen)
            return x[mask], labels[mask], sizes[chosen]

        n_valid = int(round(self.config.valid_fraction * len(kept_groups)))
        if self.config.valid_fraction > 0 and len(kept_groups) >= 2:
            n_valid = min(max(n_valid, 1), len(kept_groups) - 1)
        else:
            n_valid = 0
        boosters, best_iterations, valid_ndcgs = [], [], []
        for member in range(self.config.n_models):
            seed = self.config.seed + member
            # Users, not candidate rows, are held out, so no user is in both the training and the stopping set.
            shuffled = np.random.default_rng(seed).permutation(kept_groups)
            if trainer is not None:
                train, valid = grouped(np.sort(shuffled[n_valid:])), grouped(np.sort(shuffled[:n_valid]))
                booster, rounds, ndcg = trainer(self.config.lightgbm_params(seed), train, valid if n_valid else None)
                boosters.append(booster)
                best_iterations.append(rounds)
                valid_ndcgs.extend([] if ndcg is None else [ndcg])
                continue
            train_set = dataset(np.sort(shuffled[n_valid:]))
            params = self.config.lightgbm_params(seed)
            if n_valid:
                valid_set = dataset(np.sort(shuffled[:n_valid]), reference=train_set)
                booster = lgb.train(
                    params,
                    train_set,
                    num_boost_round=self.config.n_estimators,
                    valid_sets=[valid_set],
                    valid_names=["held_out"],
                    callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
                )
                best_iterations.append(int(booster.best_iteration) or booster.current_iteration())
                valid_ndcgs.append(float(booster.best_score["held_out"][f"ndcg@{self.config.eval_at}"]))
            else:
                booster = lgb.train(params, train_set, num_boost_round=self.config.n_estimators)
                best_iterations.append(booster.current_iteration())
            boosters.append(booster)
        self.boosters_, self.best_iterations_ = boosters, best_iterations
        self.model_files_, self.compiled_ = [], []  # nothing compiled scores these models
        self.valid_ndcg_ = float(np.mean(valid_ndcgs)) if valid_ndcgs else float("nan")
        self.feature_names = list(feature_names)
        return self

    def _boosters(self) -> list[lgb.Booster]:
        if not self.boosters_:
            raise ValueError("the ranker is not fitted; call fit or LambdaRanker.load first")
        return self.boosters_

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """(n,) float64 scores, higher = rank higher; only the order within a row means anything."""
        return self.score_matrix(_matrix(features, self.feature_names))

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """``score`` of an (n, len(feature_names)) float64 matrix whose columns are ``feature_names`` in order.

        One ``predict`` per model of the ensemble: adding the models' trees up in one booster would sum the same
        values in another order, so the scores would move in their last bits."""
        boosters = self._boosters()
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"a ({len(x)}, {len(self.feature_names)}) matrix expected, got {x.shape}")
        total = np.zeros(len(x))
        # Each row's prediction is the same whatever the thread count: only the speed depends on it.
        threads = {"num_threads": 1} if len(x) < SINGLE_THREAD_ROWS else {}
        compiled = self.compiled_ or [None] * len(boosters)
        for booster, rounds, twin in zip(boosters, self.best_iterations_, compiled):
            total += twin.predict(x) if twin is not None else booster.predict(x, num_iteration=rounds, **threads)
        return total / len(boosters)

    def compile(self, cache_dir: str | Path | None = None) -> int:
        """Score with each model compiled to machine code where it compiles and scores as LightGBM does
        (``recmodels.ranking.compiled``; ``cache_dir`` keeps the machine code); returns how many models are. Needs
        a ranker ``load`` read, whose files hold just the kept trees."""
        boosters = self._boosters()
        if not self.model_files_:
            raise ValueError("only a loaded ranker compiles: call LambdaRanker.load first")
        self.compiled_ = [
            compile_model(path, booster, Path(cache_dir) if cache_dir is not None else None)
            if booster.num_trees() == rounds else None  # a format-1 file may hold trees past the kept ones
            for path, booster, rounds in zip(self.model_files_, boosters, self.best_iterations_)]
        return self.n_compiled

    @property
    def n_compiled(self) -> int:
        """How many models score compiled (0 before ``compile``)."""
        return sum(twin is not None for twin in self.compiled_)

    def feature_importance(self) -> pd.DataFrame:
        """Per feature: total gain and number of splits over every model's kept trees, by gain descending."""
        boosters = self._boosters()
        gain = sum(b.feature_importance("gain", iteration=n) for b, n in zip(boosters, self.best_iterations_))
        split = sum(b.feature_importance("split", iteration=n) for b, n in zip(boosters, self.best_iterations_))
        table = pd.DataFrame({"feature": self.feature_names, "gain": gain, "split": split})
        return table.sort_values(["gain", "feature"], ascending=[False, True], kind="stable").reset_index(
            drop=True
        )

    def save(self, folder: str | Path) -> Path:
        """Writes ``ranker-<i>.txt`` per model (LightGBM's text model, kept trees only) and ``ranker.json``; no
        pickle."""
        boosters = self._boosters()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for member, (booster, rounds) in enumerate(zip(boosters, self.best_iterations_)):
            files.append(f"ranker-{member}.txt")
            booster.save_model(str(folder / files[-1]), num_iteration=rounds)
        meta = {
            "format_version": FORMAT_VERSION,
            "feature_names": self.feature_names,
            "config": asdict(self.config),
            "model_files": files,
            "best_iterations": self.best_iterations_,
            "valid_ndcg": None if np.isnan(self.valid_ndcg_) else self.valid_ndcg_,
            "n_groups_dropped": self.n_groups_dropped_,
        }
        (folder / "ranker.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LambdaRanker:
        """The ranker ``save`` wrote to ``folder``; it scores exactly as the saved one did. Also reads format 1
        (one model in ``ranker.txt``), so champions registered before ensembles still load."""
        folder = Path(folder)
        meta = json.loads((folder / "ranker.json").read_text())
        version = meta.get("format_version")
        if version == 1:
            files, rounds = ["ranker.txt"], [int(meta["best_iteration"])]
            config = {**meta["config"], "n_models": 1}
        elif version == FORMAT_VERSION:
            files, rounds, config = meta["model_files"], [int(n) for n in meta["best_iterations"]], meta["config"]
        else:
            raise ValueError(f"ranker.json format {version}, expected {FORMAT_VERSION} (or 1)")
        ranker = cls(config=RankerConfig(**config))
        ranker.model_files_ = [folder / name for name in files]
        ranker.boosters_ = [lgb.Booster(model_file=str(path)) for path in ranker.model_files_]
        if any(booster.feature_name() != meta["feature_names"] for booster in ranker.boosters_):
            raise ValueError(f"the model files in {folder} and ranker.json disagree on the feature names")
        ranker.feature_names = list(meta["feature_names"])
        ranker.best_iterations_ = rounds
        ranker.valid_ndcg_ = float("nan") if meta["valid_ndcg"] is None else float(meta["valid_ndcg"])
        ranker.n_groups_dropped_ = int(meta["n_groups_dropped"])
        return ranker


def rerank_topk(candidates: pd.DataFrame, scores: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """(n_rows, k) internal ids per row by descending score (ties to the lower id; NaN last), 0-padded.

    A row with fewer than ``k`` candidates (or none) is padded with PAD (0), which never matches a target in
    ``recmodels.metrics.ranking_metrics``, so padding counts as a miss.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(candidates):
        raise ValueError(f"{len(scores)} scores for {len(candidates)} candidates")
    rows = candidates["row"].to_numpy(np.int64)
    items = candidates["item"].to_numpy(np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"candidate rows must be in 0..{n_rows - 1}")
    order = np.lexsort((items, -np.where(np.isnan(scores), -np.inf, scores), rows))
    rows, items = rows[order], items[order]
    position = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = position < k
    topk = np.full((n_rows, k), PAD, dtype=np.int64)
    topk[rows[keep], position[keep]] = items[keep]
    return topk


def ranker_feature_names(candidates: pd.DataFrame) -> list[str]:
    """Every column the ranker reads: each source's score and rank, then the named features."""
    sources = [c for c in candidates.columns if c.endswith(("_score", "_rank"))]
    return sources + feature_columns(candidates)
