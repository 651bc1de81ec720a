"""Incremental text embeddings over the DuckDB warehouse: plain functions of a connection (no Dagster here).

``embeddings.text_embedding_cache`` holds one vector per (model_id, pooling, max_length, sha256 of the text):
everything that decides a vector, and nothing that does not (which item a text belongs to, when it was built).
So a rerun over an unchanged catalogue embeds nothing, an edited or new item embeds only its text, identical
texts of different items embed once, and a new model (or pooling, or max_length) misses everything and
re-embeds it. Rows of older models stay, so switching back is free; delete them with SQL when unwanted.

Device and precision are deliberately not part of the key: they move a vector in its last bits (fp32 on
another device) or in about the third decimal of cosine (fp16/bf16 autocast), far less than separates two
different texts, and a cache filled on a GPU is meant to serve a CPU run.

Lookups are set-based: the distinct texts of a call go in as one Arrow table, DuckDB hashes them (sha256,
vectorised) and joins them against the cache, and the new vectors go back with one INSERT; never one query
per text. The cache keeps a vector as a BLOB of
``dim`` little-endian float32 values: exact, model-agnostic (one table for every dim), and read back as one
buffer; a FLOAT[] list column made the lookup of 4k cached vectors about twice as slow. The per-item table,
which SQL does query, has a FLOAT[dim] column instead.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Protocol

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from orchestration.store.lake import in_lake

CACHE_TABLE = "embeddings.text_embedding_cache"
ITEM_EMBEDDINGS_TABLE = "embeddings.item_embeddings"


class Encoder(Protocol):
    """What the cache needs of an encoder (``recmodels.text_encoder.TextEncoder`` is one)."""

    model_id: str
    pooling: str
    max_length: int
    dim: int

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbedStats:
    """What one ``embed_with_cache`` call did; counts of distinct texts unless said otherwise."""

    n_texts: int  # texts asked for, duplicates included
    n_unique: int  # distinct texts among them
    n_cached: int  # distinct texts whose vector came from the cache
    n_embedded: int  # distinct texts run through the encoder and added to the cache
    seconds: float  # wall time of the whole call (hashing, lookup, encoding, insert)
    embed_seconds: float  # of which in the encoder
    texts_per_s: float  # n_texts / seconds
    # Positions in the input (duplicates included) whose vector the encoder computed in this call.
    encoded_positions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False)

    def as_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in asdict(self).items() if k != "encoded_positions"}

    def encoded_mask(self) -> np.ndarray:
        """One flag per input text: True where its vector was encoded now, False where it came from the cache."""
        mask = np.zeros(self.n_texts, dtype=bool)
        mask[self.encoded_positions] = True
        return mask


def text_sha256(text: str) -> str:
    """The cache's text key, as DuckDB's ``sha256(text)`` computes it in the queries below."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    if not schema or not name:
        raise ValueError(f"table must be 'schema.name', got {table!r}")
    return schema, name


def _quoted(table: str) -> str:
    schema, name = _split(table)
    return '"{}"."{}"'.format(schema.replace('"', '""'), name.replace('"', '""'))


def ensure_cache_table(con: duckdb.DuckDBPyConnection, table: str = CACHE_TABLE) -> None:
    schema, _ = _split(table)
    con.execute(f'create schema if not exists "{schema}"')
    con.execute(
        f"""create table if not exists {_quoted(table)} (
            model_id varchar not null,
            pooling varchar not null,
            max_length integer not null,
            text_sha256 varchar not null,
            dim integer not null,
            vector blob not null  -- dim float32 values, little-endian
        )"""
    )


def _vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def _list_column_to_matrix(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    if flat.size != len(column) * dim:
        raise ValueError(f"vectors do not all have {dim} values")
    return flat.astype(np.float32, copy=False).reshape(len(column), dim)


def _blob_column(vectors: np.ndarray) -> pa.Array:
    """One BLOB per row, built from the matrix's own buffer (no per-row Python bytes)."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    n, width = vectors.shape[0], vectors.shape[1] * 4
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int32) * width)
    return pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(vectors.tobytes())])


def _blob_column_to_matrix(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    array = column.combine_chunks()
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        offset_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
        offsets = np.frombuffer(array.buffers()[1], offset_type)[array.offset:array.offset + len(array) + 1]
        lengths_ok = bool(np.all(np.diff(offsets) == dim * 4))
        data = np.frombuffer(array.buffers()[2], np.uint8)[offsets[0]:offsets[-1]] if len(array) else b""
    else:  # another Arrow layout (a binary view): slower, still correct
        values = array.to_pylist()
        lengths_ok = all(len(value) == dim * 4 for value in values)
        data = b"".join(values)
    if not lengths_ok:
        raise ValueError(f"cached vectors are not all {dim} float32 values: the cache table is inconsistent")
    # A read-only view of Arrow's buffer: the caller's scatter into its own matrix is the only copy.
    return np.frombuffer(data, dtype="<f4").reshape(len(array), dim)


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, data: pa.Table) -> Iterator[str]:
    """``data`` visible to SQL under a fresh name for the duration of the ``with`` block."""
    name = f"_embedding_rows_{uuid.uuid4().hex[:12]}"
    con.register(name, data)
    try:
        yield name
    finally:
        con.unregister(name)


def embed_with_cache(
    con: duckdb.DuckDBPyConnection,
    texts: Sequence[str],
    encoder: Encoder,
    *,
    table: str = CACHE_TABLE,
    show_progress: bool = False,
) -> tuple[np.ndarray, EmbedStats]:
    """Vectors for ``texts`` ((n, dim) float32, row i for ``texts[i]``): cached ones read, the rest encoded
    and added to the cache. Creates the cache table when missing."""
    started = time.perf_counter()
    texts = list(texts)
    unique = list(dict.fromkeys(texts))
    key = {"model_id": encoder.model_id, "pooling": encoder.pooling, "max_length": int(encoder.max_length)}
    ensure_cache_table(con, table)

    vectors = np.empty((len(unique), encoder.dim), dtype=np.float32)
    # DuckDB hashes the texts (vectorised, in parallel): no Python object per text on the way in.
    lookup = pa.table({"position": pa.array(np.arange(len(unique), dtype=np.int64)), "text": unique})
    with _registered(con, lookup) as rows:
        hits = con.sql(
            f"""select {rows}.position, cache.vector
                from {rows}
                join {_quoted(table)} as cache
                  on cache.text_sha256 = sha256({rows}.text)
                 and cache.model_id = $model_id and cache.pooling = $pooling
                 and cache.max_length = $max_length
                qualify row_number() over (partition by {rows}.position) = 1""",
            params=key,
        ).to_arrow_table()
    hit_rows = hits.column("position").to_numpy()
    if len(hit_rows):
        vectors[hit_rows] = _blob_column_to_matrix(hits.column("vector"), encoder.dim)

    missing = np.setdiff1d(np.arange(len(unique)), hit_rows)  # sorted: the input order of first occurrences
    embed_seconds = 0.0
    if len(missing):
        embed_started = time.perf_counter()
        new = encoder.encode([unique[i] for i in missing], show_progress=show_progress)
        new = np.asarray(new, dtype=np.float32)
        embed_seconds = time.perf_counter() - embed_started
        if new.shape != (len(missing), encoder.dim):
            raise ValueError(f"encoder returned shape {new.shape}, expected {(len(missing), encoder.dim)}")
        vectors[missing] = new
        rows_to_add = pa.table({"text": [unique[i] for i in missing], "vector": _blob_column(new)})
        with _registered(con, rows_to_add) as added:
            # No key constraint (a shared DuckLake has none): the insert skips texts cached meanwhile, and where two
            # runs on a lake both insert one text at once, the lookup above takes either of the equal vectors.
            con.execute(
                f"""insert into {_quoted(table)}
                    select $model_id, $pooling, $max_length, sha256(text), $dim, vector from {added}
                    where not exists (
                        select 1 from {_quoted(table)} as cache
                        where cache.text_sha256 = sha256({added}.text) and cache.model_id = $model_id
                          and cache.pooling = $pooling and cache.max_length = $max_length)""",
                {**key, "dim": int(encoder.dim)},
            )

    unique_position = np.arange(len(texts))
    if len(unique) != len(texts):
        row_of = {text: row for row, text in enumerate(unique)}
        unique_position = np.fromiter((row_of[text] for text in texts), dtype=np.int64, count=len(texts))
        vectors = vectors[unique_position]
    seconds = time.perf_counter() - started
    stats = EmbedStats(
        n_texts=len(texts),
        n_unique=len(unique),
        n_cached=len(hit_rows),
        n_embedded=len(missing),
        seconds=round(seconds, 4),
        embed_seconds=round(embed_seconds, 4),
        texts_per_s=round(len(texts) / seconds, 1) if seconds > 0 else float("inf"),
        encoded_positions=np.flatnonzero(np.isin(unique_position, missing)),
    )
    return vectors, stats


def write_item_embeddings(
    con: duckdb.DuckDBPyConnection,
    item_texts: pd.DataFrame,
    vectors: np.ndarray,
    encoder: Encoder,
    *,
    table: str = ITEM_EMBEDDINGS_TABLE,
) -> int:
    """Replace ``table`` with one row per item: item_id, text, text_sha256, is_empty_text, model_id, pooling,
    max_length, dim, vector FLOAT[dim]. Returns the row count.

    ``item_texts`` is ``recmodels.item_text.build_item_texts``'s frame, ``vectors`` its rows' embeddings.
    The vector is a fixed-size FLOAT[dim] array, so SQL can rank by ``array_cosine_similarity`` directly; a
    shared DuckLake stores no fixed-size arrays, so there it is a FLOAT[] list (cast it to FLOAT[dim] to rank).
    """
    missing_columns = {"item_id", "text", "is_empty_text"} - set(item_texts.columns)
    if missing_columns:
        raise KeyError(f"item_texts lacks {sorted(missing_columns)}")
    if vectors.shape != (len(item_texts), encoder.dim):
        raise ValueError(f"vectors have shape {vectors.shape}, expected {(len(item_texts), encoder.dim)}")
    texts = item_texts["text"].tolist()
    rows = pa.table({
        "item_id": pa.array(item_texts["item_id"].to_numpy(), from_pandas=True),
        "text": texts,
        "is_empty_text": pa.array(item_texts["is_empty_text"].to_numpy(dtype=bool)),
        "vector": _vectors_column(vectors),
    })
    schema, _ = _split(table)
    con.execute(f'create schema if not exists "{schema}"')
    vector_type = "float[]" if in_lake(con) else f"float[{int(encoder.dim)}]"
    with _registered(con, rows) as source:
        con.execute(
            f"""create or replace table {_quoted(table)} as
                select item_id, text, sha256(text) as text_sha256, is_empty_text,
                       $model_id::varchar as model_id, $pooling::varchar as pooling,
                       $max_length::integer as max_length, $dim::integer as dim,
                       vector::{vector_type} as vector
                from {source}""",
            {"model_id": encoder.model_id, "pooling": encoder.pooling,
             "max_length": int(encoder.max_length), "dim": int(encoder.dim)},
        )
    return len(rows)


def read_item_embeddings(
    con: duckdb.DuckDBPyConnection, table: str = ITEM_EMBEDDINGS_TABLE
) -> tuple[pd.DataFrame, np.ndarray]:
    """``table`` back as (every column but the vector, (n, dim) float32 matrix), rows in the same order."""
    data = con.sql(f"select * from {_quoted(table)}").to_arrow_table()
    vector_type = data.schema.field("vector").type
    dim = int(vector_type.list_size) if pa.types.is_fixed_size_list(vector_type) else int(data.column("dim")[0].as_py())
    # A copy: Arrow's zero-copy view would be read-only, and callers may well normalise in place.
    matrix = np.array(_list_column_to_matrix(data.column("vector"), dim))
    return data.drop_columns(["vector"]).to_pandas(), matrix
