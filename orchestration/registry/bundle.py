"""The recommender bundle: everything needed to rank for a customer, as one folder and one registry version.

Layout: ``sasrec/`` and ``baselines/`` (the candidate sources, fit before the test cut-off), ``ranker/``
(LightGBM text + feature list), ``item_index.csv`` (internal id -> shop item id) and ``bundle.json`` (the
feature spec: source order, candidate count, what orders the candidates (``serves``: the ranker, or the one source
that won the evaluation), the split and data it was evaluated on). ``load_bundle`` turns a
folder back into a ``TwoStageRecommender``; ``champion_bundle`` fetches the registry's champion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestration.registry.promotion import BUNDLE_MODEL
from orchestration.store.paths import RecsysPaths
from recmodels.ranking import LambdaRanker
from recmodels.recommender import RANKER, TwoStageConfig, TwoStageRecommender

SPEC_FILE = "bundle.json"
ITEM_INDEX_FILE = "item_index.csv"
COMPILED_DIR = "compiled"  # under RECSYS_HOME/cache: the rankers' models as machine code for this machine's CPU
FORMAT_VERSION = 1  # of bundle.json; bump when its fields change meaning
# The registered version is an MLflow pyfunc defined by this file, with the bundle folder as its artifact.
PYFUNC_CODE = Path(__file__).with_name("bundle_pyfunc.py")
ARTIFACT_KEY = "bundle"
HISTORY_COLUMN, ITEMS_COLUMN, SCORES_COLUMN = "history", "items", "scores"
DEFAULT_K = 10
# Up to this many ids are looked up one by one: pandas' get_indexer costs about 0.1 ms whatever the count (it builds
# an index of them first), a single look-up about a microsecond.
FEW_IDS = 32


def pyfunc_signature() -> Any:
    """The pyfunc's input (a history of shop item ids, oldest first), output (items, scores) and ``k``."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(Array("string"), HISTORY_COLUMN)]),
        outputs=Schema([ColSpec(Array("string"), ITEMS_COLUMN), ColSpec(Array("double"), SCORES_COLUMN)]),
        params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]),
    )


@dataclass
class Bundle:
    recommender: TwoStageRecommender
    item_ids: np.ndarray  # shop item id of internal id i + 1 at position i
    spec: dict[str, Any]
    folder: Path
    models: dict[str, Any]  # the candidate sources by name (SASRec and the baselines)

    @cached_property
    def _index(self) -> pd.Index:
        """The shop ids as an index, built once: a request maps a few ids, and building it costs more."""
        return pd.Index(self.item_ids.astype(str))

    def internal_ids(self, shop_ids) -> np.ndarray:
        """Internal ids of ``shop_ids``; 0 (PAD) for items this bundle does not know."""
        ids = np.asarray(shop_ids).astype(str)
        if len(ids) <= FEW_IDS:  # a session's few: one hash look-up each, without get_indexer's fixed cost
            index = self._index
            return np.array([index.get_loc(i) + 1 if i in index else 0 for i in ids.tolist()], np.int64)
        position = self._index.get_indexer(pd.Index(ids))
        return np.where(position >= 0, position + 1, 0).astype(np.int64)

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the folder's files (names and bytes): the same bundle registered twice has the same digest."""
        digest = hashlib.sha256()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(self.folder).as_posix()}\0{path.stat().st_size}\0".encode())
            with path.open("rb") as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def compile_ranker(self, paths: RecsysPaths) -> int:
        """Score with the ranker's models compiled to machine code (``LambdaRanker.compile``: the same scores, a
        fraction of the time), kept under RECSYS_HOME/cache/compiled; returns how many models are. Once per bundle
        object: a second call keeps what the first compiled. 0 where a source, not the ranker, orders the
        answers."""
        ranker = self.recommender.ranker
        if self.recommender.serves != RANKER:  # a source won the evaluation: the ranker orders nothing served
            return 0
        if not ranker.compiled_:
            ranker.compile(paths.cache_dir / COMPILED_DIR)
        return ranker.n_compiled

    @cached_property
    def _padded_ids(self) -> np.ndarray:
        """Shop ids by internal id, None at PAD: built once, a response gathers from it."""
        return np.concatenate([[None], self.item_ids.astype(object)])

    def shop_ids(self, internal: np.ndarray) -> np.ndarray:
        """Shop ids of internal ids; None for PAD."""
        return self._padded_ids[np.asarray(internal, dtype=np.int64)]


def write_bundle(
    folder: Path, sasrec_dir: Path, baselines_dir: Path, ranker_dir: Path, config: TwoStageConfig, info: dict[str, Any],
    serves: str = RANKER,
) -> dict[str, Any]:
    """Copy the three model folders into ``folder`` and write the item index and the spec; returns the spec.
    ``serves``: what orders the candidates, the ranker or the one source that won the evaluation."""
    for name, source in (("sasrec", sasrec_dir), ("baselines", baselines_dir), ("ranker", ranker_dir)):
        shutil.copytree(source, folder / name)
    from recmodels import sasrec  # torch loads with a model, not when the Definitions load

    item_ids = sasrec.load_item_ids(folder / "sasrec")
    pd.DataFrame({"internal_id": np.arange(1, len(item_ids) + 1), "item_id": item_ids}).to_csv(
        folder / ITEM_INDEX_FILE, index=False)
    sources = ["sasrec", *json.loads((folder / "baselines" / "index.json").read_text())["models"]]
    ranker = LambdaRanker.load(folder / "ranker")
    if serves != RANKER and serves not in sources:
        raise ValueError(f"serves must be {RANKER!r} or one of {sources}, got {serves!r}")
    spec = {"format_version": FORMAT_VERSION, "sources": sources, "features": ranker.feature_names,
            "serves": serves, **asdict(config), **info}
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2, default=str) + "\n")
    return spec


def load_bundle(folder: Path, device: str | None = "cpu") -> Bundle:
    """A ``write_bundle`` folder as a ready recommender; refuses unknown format versions."""
    spec_file = folder / SPEC_FILE
    if not spec_file.exists():
        raise FileNotFoundError(f"{folder} is not a recommender bundle: {SPEC_FILE} is missing")
    spec = json.loads(spec_file.read_text())
    if spec.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{spec_file} has format_version {spec.get('format_version')}, this code reads {FORMAT_VERSION}")
    from recmodels import sasrec
    from recmodels.baselines import load_baselines

    item_ids = sasrec.load_item_ids(folder / "sasrec")
    sequential = sasrec.load(folder / "sasrec", device=device)
    models = {"sasrec": sequential, **load_baselines(folder / "baselines")}
    sources = {name: models[name].score for name in spec["sources"]}
    # The text matrix SASRec was saved with (and has just loaded) also feeds the ranker's text features.
    item_text = sequential.item_text.detach().cpu().numpy() if sequential.config.uses_text else None
    config = TwoStageConfig.from_spec(spec)
    # A bundle written before ``serves`` existed is ranked by its ranker, as it was then.
    recommender = TwoStageRecommender(sources, LambdaRanker.load(folder / "ranker"), config, item_text=item_text,
                                      serves=spec.get("serves", RANKER))
    return Bundle(recommender, item_ids, spec, folder, models)


def registered_bundle(client: Any, version: int, paths: RecsysPaths) -> Path:
    """Version ``version`` of the registered bundle model, downloaded once under RECSYS_HOME/cache/bundles."""
    return download_version(client, BUNDLE_MODEL, version, paths.cache_dir / "bundles")


def download_version(client: Any, model_name: str, version: int, cache_dir: Path) -> Path:
    """The registered version's files, downloaded once into ``cache_dir/<model>/v<version>``."""
    target = cache_dir / model_name / f"v{version}"
    if (target / SPEC_FILE).exists():
        return target
    source = client.get_model_version(model_name, str(version)).source
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    import mlflow

    # MLflow draws a progress bar per download; in the demo, replay and service logs it is only noise.
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(scratch), tracking_uri=client.tracking_uri)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous
    # A pyfunc version (models:/m-...) holds the bundle under artifacts/, an older plain-folder version under the
    # last path component of its source ("model"): the bundle is the shallowest folder with a spec file.
    specs = sorted(scratch.rglob(SPEC_FILE), key=lambda path: len(path.parts))
    downloaded = specs[0].parent if specs else scratch
    shutil.rmtree(target, ignore_errors=True)
    downloaded.rename(target)
    shutil.rmtree(scratch, ignore_errors=True)
    return target
