"""What the model assets hand to each other on disk, under ``RECSYS_HOME/artifacts``, in safe formats only.

Plain functions (no Dagster): which split a model folder was
fit on (lineage), the text matrix a model reads, and folders filled aside and swapped in by rename, so a
crashed run never leaves half a model where the next asset reads one. Each model writes its own files
(``recmodels.sasrec.save``, ``recmodels.baselines.save_baselines``, ``LambdaRanker.save``), in safe formats
only: no pickles (a split too: ``recmodels.splits.save_split``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from orchestration.store.embedding_cache import read_item_embeddings
from orchestration.store.paths import ArtifactPaths
from recmodels.splits import StoredSplit

LINEAGE_FILE = "lineage.json"


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
