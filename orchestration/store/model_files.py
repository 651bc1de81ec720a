"""What the model assets hand to each other on disk, under ``RECSYS_HOME/artifacts``, in safe formats only.

Plain functions (no Dagster). A split is one ``.npz`` of flat arrays plus offsets, read with
``allow_pickle=False``; SASRec is its own state dict + JSON config plus the item ids and the frozen text matrix
it was trained with, so a registered model scores without the warehouse; a baseline is its fitted arrays
(``.npz``) and options (JSON). Folders are filled aside and swapped in by rename, so a crashed run never
leaves half a model where the next asset reads one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recmodels.baselines import BuyAgain, ItemKNN, MostPopular, RecentPopular, TextKNN
from recmodels.splits import EvalSet, Split

if TYPE_CHECKING:  # torch loads only when a model is saved or loaded, not when the Definitions load
    from recmodels.sasrec import SASRec

BASELINE_CLASSES = {cls.__name__: cls for cls in (MostPopular, RecentPopular, BuyAgain, ItemKNN, TextKNN)}
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


def save_sasrec(model: SASRec, folder: Path, item_ids: np.ndarray, item_text: np.ndarray | None) -> Path:
    """``sasrec.save``'s files plus ``item_ids.json`` (internal id i + 1 <-> entry i) and ``item_text.npy``."""
    from recmodels import sasrec

    sasrec.save(model, folder)
    (folder / "item_ids.json").write_text(json.dumps([str(item) for item in item_ids]) + "\n")
    if model.config.uses_text:
        np.save(folder / "item_text.npy", np.asarray(item_text, dtype=np.float32))
    return folder


def load_sasrec(folder: Path, device: str | None = None) -> tuple[SASRec, np.ndarray]:
    """(model in eval mode, external item ids in internal order) from a ``save_sasrec`` folder."""
    from recmodels import sasrec

    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} holds no SASRec model: materialize the sasrec_model asset first.")
    text_file = folder / "item_text.npy"
    item_text = np.load(text_file, allow_pickle=False) if text_file.exists() else None
    model = sasrec.load(folder, item_text_embeddings=item_text, device=device)
    return model, np.asarray(json.loads((folder / "item_ids.json").read_text()), dtype=str)


def save_baselines(models: dict[str, Any], folder: Path, info: dict[str, Any]) -> None:
    """Per baseline ``{name}.json`` (class, options) and ``{name}.npz`` (fitted arrays); ``index.json`` lists
    them in order, with ``info``."""
    for name, model in models.items():
        options, state, arrays = {}, {}, {}
        for field in dataclasses.fields(model):
            value = getattr(model, field.name)
            if field.init:
                options[field.name] = value
            elif sp.issparse(value):
                csr = value.tocsr()
                arrays.update({f"{field.name}.data": csr.data, f"{field.name}.indices": csr.indices,
                               f"{field.name}.indptr": csr.indptr, f"{field.name}.shape": np.asarray(csr.shape)})
            elif isinstance(value, np.ndarray):
                arrays[field.name] = value
            else:
                state[field.name] = value
        spec = {"class": type(model).__name__, "options": options, "state": state}
        (folder / f"{name}.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        np.savez(folder / f"{name}.npz", **arrays)
    (folder / "index.json").write_text(json.dumps({"models": list(models), **info}, indent=2) + "\n")


def load_baselines(folder: Path) -> dict[str, Any]:
    """The fitted baselines of a ``save_baselines`` folder, by name, in the order they were saved."""
    if not (folder / "index.json").exists():
        raise FileNotFoundError(f"{folder} holds no baselines: materialize the baseline_models asset first.")
    return {name: _load_baseline(folder, name) for name in json.loads((folder / "index.json").read_text())["models"]}


def _load_baseline(folder: Path, name: str) -> Any:
    spec = json.loads((folder / f"{name}.json").read_text())
    model = BASELINE_CLASSES[spec["class"]](**spec["options"])
    with np.load(folder / f"{name}.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    for key, value in spec["state"].items():
        setattr(model, key, value)
    for key in {key.split(".")[0] for key in arrays}:
        if key in arrays:
            setattr(model, key, arrays[key])
        else:
            parts = (arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"])
            setattr(model, key, sp.csr_matrix(parts, shape=tuple(arrays[f"{key}.shape"])))
    return model
