"""What the model assets hand to each other on disk, under ``RECSYS_HOME/artifacts``, in safe formats only.

Plain functions (no Dagster): where each asset writes (``ArtifactPaths``), which split a model folder was
fit on (lineage), the text matrix a model reads, and folders filled aside and swapped in by rename, so a
crashed run never leaves half a model where the next asset reads one. Each model writes its own files
(``recmodels.sasrec.save``, ``recmodels.baselines.save_baselines``, ``LambdaRanker.save``), in safe formats
only: no pickles. A split is one ``.npz`` of flat arrays plus offsets, read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from orchestration.store.embedding_cache import read_item_embeddings
from recmodels.splits import EvalSet, Split

LINEAGE_FILE = "lineage.json"
PHASES = ("validation", "test")  # models fit on split.train score validation; on split.train_for_test, test


@dataclass(frozen=True)
class ArtifactPaths:
    """Where each model asset writes, below one root (``RecsysPaths.artifacts_dir``)."""

    root: Path

    @property
    def split_file(self) -> Path:
        return self.root / "user_sequences" / "split.npz"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def sasrec_dir(self, phase: str) -> Path:
        """The test-phase model is the registered one; the validation-phase one is kept for evaluation."""
        return self.models_dir / ("sasrec" if phase == "test" else f"sasrec-{phase}")

    def baselines_dir(self, phase: str) -> Path:
        return self.models_dir / "baselines" / phase

    def checkpoint_dir(self, key: str) -> Path:
        return self.root / "checkpoints" / "sasrec" / key


@dataclass(frozen=True)
class StoredSplit:
    """A ``Split`` with the timestamps of its training events and how it was made."""

    split: Split
    train_times: list[np.ndarray]  # aligned with split.train
    train_for_test_times: list[np.ndarray]  # aligned with split.train_for_test
    info: dict[str, Any]  # sequence config, cut-offs, data version, counts (JSON-able)
    content_hash: str = ""  # sha256 of the arrays: equal for equal splits, whenever and wherever written

    def training(self, phase: str) -> tuple[list[np.ndarray], list[np.ndarray], EvalSet]:
        """(training sequences, their timestamps, rows to score) of ``phase``."""
        if phase == "validation":
            return self.split.train, self.train_times, self.split.validation
        if phase == "test":
            return self.split.train_for_test, self.train_for_test_times, self.split.test
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")


@contextmanager
def replaced_folder(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` to fill; on success it takes ``target``'s place by rename (the old
    folder is removed after), on error it is removed and ``target`` stays as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir()
    try:
        yield staging
        retired = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pack(arrays: Sequence[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Ragged arrays as (values, offsets): array i is values[offsets[i]:offsets[i + 1]]."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    values = np.concatenate([np.asarray(a, dtype=dtype) for a in arrays]) if len(arrays) else np.array([], dtype)
    return values.astype(dtype, copy=False), offsets


def _unpack(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def save_split(stored: StoredSplit, path: Path) -> str:
    """Write ``stored`` to ``path`` (``.npz``, no pickles), replacing it atomically; returns its content hash."""
    split = stored.split
    arrays: dict[str, np.ndarray] = {"item_ids": np.asarray(split.item_ids, dtype=str)}
    ragged = {
        "train": (split.train, np.int64),
        "train_times": (stored.train_times, "datetime64[ns]"),
        "train_for_test": (split.train_for_test, np.int64),
        "train_for_test_times": (stored.train_for_test_times, "datetime64[ns]"),
    }
    for name, eval_set in (("validation", split.validation), ("test", split.test)):
        ragged[f"{name}_histories"] = (eval_set.histories, np.int64)
        ragged[f"{name}_targets"] = (eval_set.targets, np.int64)
        arrays[f"{name}_keys"] = np.asarray(eval_set.keys, dtype=str)
    for name, (sequences, dtype) in ragged.items():
        arrays[f"{name}_values"], arrays[f"{name}_offsets"] = _pack(sequences, dtype)
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode() + arrays[name].dtype.str.encode() + arrays[name].tobytes())
    meta = {"n_items": split.n_items, "name": split.name, "info": stored.info, "content_hash": digest.hexdigest()}
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)
    return meta["content_hash"]


def load_split(path: Path) -> StoredSplit:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: materialize the user_sequences asset first.")
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta_json"]))

    def ragged(name: str) -> list[np.ndarray]:
        return _unpack(arrays[f"{name}_values"], arrays[f"{name}_offsets"])

    def eval_set(name: str) -> EvalSet:
        return EvalSet(histories=ragged(f"{name}_histories"), targets=ragged(f"{name}_targets"), keys=arrays[f"{name}_keys"])

    split = Split(
        n_items=int(meta["n_items"]),
        train=ragged("train"),
        validation=eval_set("validation"),
        test=eval_set("test"),
        train_for_test=ragged("train_for_test"),
        name=meta["name"],
        item_ids=arrays["item_ids"],
    )
    return StoredSplit(split, ragged("train_times"), ragged("train_for_test_times"), meta["info"], meta["content_hash"])


def aligned_text_matrix(item_ids: np.ndarray, embedded: pd.DataFrame, vectors: np.ndarray) -> tuple[np.ndarray, int]:
    """(n_items + 1, d) text vectors in internal-id order, and how many items have one.

    ``embedded``/``vectors`` are ``read_item_embeddings``'s output. Row 0 (PAD), items without a vector and
    items with an empty text stay zero: the embedding of "" says nothing about the item.
    """
    usable = ~embedded["is_empty_text"].to_numpy(dtype=bool)
    row_of = pd.Series(np.flatnonzero(usable), index=embedded["item_id"].astype(str).to_numpy()[usable])
    rows = row_of.reindex(np.asarray(item_ids, dtype=str)).to_numpy()
    found = ~np.isnan(rows)
    matrix = np.zeros((len(item_ids) + 1, vectors.shape[1]), dtype=np.float32)
    matrix[1:][found] = vectors[rows[found].astype(np.int64)]
    return matrix, int(found.sum())


def write_lineage(folder: Path, split: StoredSplit) -> None:
    """``lineage.json``: the split (and so the data) a model folder was fit on."""
    lineage = {"split_hash": split.content_hash, "split": split.split.name, "data_version": split.info.get("data_version")}
    (folder / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2) + "\n")


def fit_on(folder: Path, split: StoredSplit) -> bool:
    """Whether the models in ``folder`` were fit on ``split``."""
    lineage_file = folder / LINEAGE_FILE
    return lineage_file.exists() and json.loads(lineage_file.read_text())["split_hash"] == split.content_hash


def read_text_matrix(con: duckdb.DuckDBPyConnection, item_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """``aligned_text_matrix`` of the embeddings in the warehouse behind ``con``."""
    embedded, vectors = read_item_embeddings(con)
    return aligned_text_matrix(item_ids, embedded, vectors)


class StaleModelsError(RuntimeError):
    """A model folder was fit on another split than the one stored now."""


def load_phase_models(paths: ArtifactPaths, stored: StoredSplit, phase: str) -> dict[str, Any]:
    """Every model of ``phase`` by name, SASRec first; refuses models fit on another split than ``stored``."""
    from recmodels import sasrec  # torch loads when a model does, not when the Definitions load
    from recmodels.baselines import load_baselines

    folders = {"sasrec_model": paths.sasrec_dir(phase), "baseline_models": paths.baselines_dir(phase)}
    missing = [asset for asset, folder in folders.items() if not folder.exists()]
    if missing:
        raise FileNotFoundError(f"No {phase} models of {' and '.join(missing)} under {paths.models_dir}: "
                                "materialize them first.")
    stale = [asset for asset, folder in folders.items() if not fit_on(folder, stored)]
    if stale:
        raise StaleModelsError(f"{' and '.join(stale)} were fit on another split than user_sequences holds now: "
                               "materialize them again.")
    return {"sasrec": sasrec.load(folders["sasrec_model"]), **load_baselines(folders["baseline_models"])}
