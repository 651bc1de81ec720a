"""The ranker's LightGBM models compiled to machine code (lleaves, on LLVM), scoring bit for bit as LightGBM does.

A served session scores about a hundred candidates with each of the ensemble's models. LightGBM walks its trees
node by node through generic arrays, about 15 microseconds per row for 700 trees; the same trees compiled into
branches cost about a fifth of that (BENCHMARKS.md, serving, sixth session). The compiled model must give the very
numbers LightGBM gives, or the API's answers would part from ``ml.user_recommendations`` wherever two scores tie to
the last bit: so trees are summed in LightGBM's order (one block of every tree: lleaves' cache blocking adds the
blocks' sums, which rounds differently), and every compiled model is checked against LightGBM on rows that sit on
and beside each of its split thresholds before it is used. A model that fails the check, or a machine without
lleaves, keeps LightGBM.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path

import lightgbm as lgb
import numpy as np

logger = logging.getLogger(__name__)

PROBE_ROWS = 512  # rows of the check against LightGBM; each feature takes its thresholds' values and their neighbours
PROBE_SEED = 0


class CompiledModel:
    """One LightGBM text model compiled; ``predict`` equals ``lgb.Booster.predict`` with every tree kept."""

    def __init__(self, model):
        self._model = model

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n,) float64 scores of an (n, features) float64 matrix, on this thread."""
        return self._model.predict(np.ascontiguousarray(x, dtype=np.float64), n_jobs=1)


def compile_model(model_file: Path, booster: lgb.Booster, cache_dir: Path | None) -> CompiledModel | None:
    """``model_file`` (LightGBM's text, every tree kept) compiled, or None where lleaves is missing or the compiled
    model scores any probe row differently from ``booster``. The machine code is kept in ``cache_dir`` under a
    name made from the model's text, the compilers' versions and this CPU, only once it has passed the check, so a
    model compiles and is checked once per machine (the check reads every tree: 0.1 s for 170 of them)."""
    try:
        import lleaves
        import llvmlite.binding as llvm
    except ImportError:
        logger.info("lleaves is not installed: the ranker scores with LightGBM")
        return None
    model = lleaves.Model(model_file=str(model_file))
    if model.num_trees() != booster.num_trees():
        raise ValueError(f"{model_file} holds {model.num_trees()} trees, the booster {booster.num_trees()}")
    options = {"fblocksize": max(model.num_trees(), 1), "finline": False}  # one block: LightGBM's order of sums
    cached = _cache_file(model_file, cache_dir, llvm) if cache_dir is not None else None
    if cached is not None and cached.exists():
        # LLVM loads machine code unchecked, and damaged code would crash the process: its digest must match.
        digest = _digest_file(cached)
        if digest.exists() and digest.read_text() == _sha256(cached):
            model.compile(cache=str(cached), **options)
            return CompiledModel(model)
        logger.warning("The kept %s does not match its digest: compiling %s again", cached, model_file)
        cached.unlink(missing_ok=True)
    refused = cached.with_suffix(".differs") if cached is not None else None
    if refused is not None and refused.exists():
        return None
    scratch = _scratch_beside(cached) if cached is not None else None
    if scratch is None:
        cached = refused = None  # nowhere to keep it: compiled for this process only
    try:
        model.compile(cache=scratch, **options)
        compiled = CompiledModel(model)
        probe = probe_rows(booster)
        same = np.array_equal(compiled.predict(probe), booster.predict(probe, num_threads=1))
    except Exception:  # a compiler failure is no reason not to serve: LightGBM scores the same
        logger.exception("Compiling %s failed: the ranker scores it with LightGBM", model_file)
        same, compiled = False, None
    if scratch is not None and os.path.exists(scratch):
        if same:
            _write_atomically(_digest_file(cached), _sha256(Path(scratch)))
            os.replace(scratch, cached)
        else:
            os.unlink(scratch)
    if not same:
        if compiled is not None:
            logger.warning("The compiled %s scores differently from LightGBM: the ranker scores it with LightGBM",
                           model_file)
            if refused is not None:
                refused.touch()
        return None
    return compiled


def _scratch_beside(cached: Path) -> str | None:
    """A free file name next to ``cached`` for lleaves to write into, or None where the folder cannot be written.
    Another process may compile the same model at the same time: each writes its own file, the last rename wins."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=cached.parent, prefix=cached.name, suffix=".partial")
    except OSError as error:
        logger.warning("Cannot keep compiled models in %s (%s): compiling for this process only", cached.parent, error)
        return None
    os.close(handle)
    os.unlink(scratch)  # lleaves writes its cache only where no file is
    return scratch


def _digest_file(cached: Path) -> Path:
    return cached.with_suffix(".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
    with os.fdopen(handle, "w") as sink:
        sink.write(text)
    os.replace(scratch, path)


def _cache_file(model_file: Path, cache_dir: Path, llvm) -> Path:
    digest = hashlib.sha256(model_file.read_bytes())
    for part in (metadata.version("lleaves"), metadata.version("llvmlite"), llvm.get_host_cpu_name(),
                 _cpu_features(llvm), "fblocksize=all,finline=False"):
        digest.update(b"\0" + part.encode())
    return Path(cache_dir) / f"{digest.hexdigest()[:32]}.o"


def _cpu_features(llvm) -> str:
    try:
        return llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot tell on some CPUs; lleaves then compiles without them
        return ""


def probe_rows(booster: lgb.Booster, n_rows: int = PROBE_ROWS, seed: int = PROBE_SEED) -> np.ndarray:
    """(n_rows, features) float64 rows whose every value is a split threshold of that feature, the next double
    either side of one, zero or NaN: the values where a tree's comparison, or its handling of missing values, could
    go either way."""
    values: list[set[float]] = [{0.0, float("nan"), -1e30, 1e30} for _ in range(booster.num_feature())]
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" not in node:
                continue
            threshold = node["threshold"]
            if isinstance(threshold, (int, float)):  # a categorical split's is a string of categories
                threshold = float(threshold)
                values[node["split_feature"]].update(
                    {threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf)})
            stack.extend((node["left_child"], node["right_child"]))
    rng = np.random.default_rng(seed)
    columns = [rng.choice(np.array(sorted(v, key=lambda t: (np.isnan(t), t))), size=n_rows) for v in values]
    return np.column_stack(columns).astype(np.float64) if columns else np.zeros((n_rows, 0))
