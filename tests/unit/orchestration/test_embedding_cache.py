"""The embedding cache: hits and misses by (model, pooling, max_length, text), set-based, exact round trips.

A fake encoder (a seeded vector per text, and a record of what it was asked) keeps these tests about the
cache; the real encoder is covered by test_text_encoder.py and the benchmark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.store.embedding_cache import (
    CACHE_TABLE,
    embed_with_cache,
    read_item_embeddings,
    text_sha256,
    write_item_embeddings,
)

TEXTS = ["red ceramic mug", "blue glass vase", "white hanging heart", "", "set of three tins"]


class FakeEncoder:
    def __init__(self, model_id: str = "fake@1", pooling: str = "mean", max_length: int = 128, dim: int = 8):
        self.model_id, self.pooling, self.max_length, self.dim = model_id, pooling, max_length, dim
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(f"{self.model_id}|{text}".encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return vector / np.linalg.norm(vector)

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.vector(text) for text in texts])

    @property
    def embedded(self) -> list[str]:
        return [text for call in self.calls for text in call]


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def test_first_run_embeds_all_and_rerun_embeds_none_with_identical_vectors(con):
    encoder = FakeEncoder()
    first, stats = embed_with_cache(con, TEXTS, encoder)
    assert (stats.n_texts, stats.n_cached, stats.n_embedded) == (5, 0, 5)
    assert np.array_equal(first, np.stack([encoder.vector(text) for text in TEXTS]))  # rows in input order

    again, stats = embed_with_cache(con, TEXTS, FakeEncoder())
    assert (stats.n_cached, stats.n_embedded) == (5, 0)
    assert np.array_equal(again, first)  # float32 survives the warehouse bit for bit
    assert con.execute(f"select count(*) from {CACHE_TABLE}").fetchall()[0][0] == 5


def test_one_changed_and_one_new_text_embed_only_those(con):
    embed_with_cache(con, TEXTS, FakeEncoder())
    changed = [*TEXTS[:2], "white hanging heart t-light holder", *TEXTS[3:], "a brand new item"]
    encoder = FakeEncoder()
    vectors, stats = embed_with_cache(con, changed, encoder)
    assert sorted(encoder.embedded) == ["a brand new item", "white hanging heart t-light holder"]
    assert (stats.n_cached, stats.n_embedded) == (4, 2)
    assert np.array_equal(vectors, np.stack([encoder.vector(text) for text in changed]))


@pytest.mark.parametrize("change", [{"model_id": "fake@2"}, {"pooling": "cls"}, {"max_length": 64}])
def test_changing_model_pooling_or_max_length_re_embeds_everything(con, change):
    embed_with_cache(con, TEXTS, FakeEncoder())
    _, stats = embed_with_cache(con, TEXTS, FakeEncoder(**change))
    assert (stats.n_cached, stats.n_embedded) == (0, 5)
    _, stats = embed_with_cache(con, TEXTS, FakeEncoder())  # the old model's rows are still there
    assert stats.n_embedded == 0


def test_a_cached_vector_of_the_wrong_size_is_an_error_not_garbage(con):
    embed_with_cache(con, TEXTS, FakeEncoder())
    one = text_sha256(TEXTS[0])
    con.execute(f"update {CACHE_TABLE} set vector = '\\x00\\x00'::blob where text_sha256 = $h", {"h": one})
    with pytest.raises(ValueError, match="inconsistent"):
        embed_with_cache(con, TEXTS, FakeEncoder())


def test_duplicate_texts_embed_once_and_share_a_row(con):
    encoder = FakeEncoder()
    vectors, stats = embed_with_cache(con, ["mug", "", "mug", "", "vase"], encoder)
    assert (stats.n_texts, stats.n_unique, stats.n_embedded) == (5, 3, 3)
    assert encoder.embedded == ["mug", "", "vase"]
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[1], vectors[3])


def test_empty_input(con):
    vectors, stats = embed_with_cache(con, [], FakeEncoder())
    assert vectors.shape == (0, 8) and (stats.n_texts, stats.n_embedded) == (0, 0)


def test_cache_persists_across_connections(tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(path) as first:
        embed_with_cache(first, TEXTS, FakeEncoder())
    with duckdb.connect(path) as second:
        _, stats = embed_with_cache(second, TEXTS, FakeEncoder())
    assert stats.n_embedded == 0


class CountingConnection:
    """A DuckDB connection that counts the statements it is given."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.statements = con, 0

    def execute(self, *args, **kwargs):
        self.statements += 1
        return self.con.execute(*args, **kwargs)

    def sql(self, *args, **kwargs):
        self.statements += 1
        return self.con.sql(*args, **kwargs)

    def register(self, *args):
        return self.con.register(*args)

    def unregister(self, *args):
        return self.con.unregister(*args)


@pytest.mark.parametrize("n", [10, 2000])
def test_lookups_are_set_based_not_one_query_per_text(con, n):
    texts = [f"item {i}" for i in range(n)]
    counting = CountingConnection(con)
    embed_with_cache(counting, texts, FakeEncoder())  # cold: schema, table, lookup, insert
    cold = counting.statements
    counting.statements = 0
    embed_with_cache(counting, texts, FakeEncoder())  # warm: schema, table, lookup
    assert cold <= 4 and counting.statements <= 3


def test_item_embeddings_table_round_trip(con):
    encoder = FakeEncoder()
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "text": ["red mug", "", "vase"],
                          "is_empty_text": [False, True, False]})
    vectors, _ = embed_with_cache(con, items["text"].tolist(), encoder)
    assert write_item_embeddings(con, items, vectors, encoder) == 3
    meta, matrix = read_item_embeddings(con)
    assert np.array_equal(matrix, vectors)
    assert matrix.flags.writeable
    assert meta["item_id"].tolist() == ["a", "b", "c"]
    assert meta["is_empty_text"].tolist() == [False, True, False]
    assert meta["text_sha256"].tolist() == [text_sha256(text) for text in items["text"]]  # joins the cache
    assert set(meta["model_id"]) == {"fake@1"} and set(meta["dim"]) == {8}
    column_type = con.execute("select typeof(vector) from embeddings.item_embeddings limit 1").fetchall()
    assert column_type == [("FLOAT[8]",)]  # fixed size: array_cosine_similarity works in SQL
    self_similarity = con.sql(
        "select array_cosine_similarity(vector, vector) from embeddings.item_embeddings"
    ).fetchall()
    assert [round(value, 5) for (value,) in self_similarity] == [1.0, 1.0, 1.0]

    write_item_embeddings(con, items.iloc[:2], vectors[:2], encoder)  # replaced, not appended
    assert con.execute("select count(*) from embeddings.item_embeddings").fetchall()[0][0] == 2


def test_item_embeddings_rejects_mismatched_vectors(con):
    items = pd.DataFrame({"item_id": ["a"], "text": ["mug"], "is_empty_text": [False]})
    with pytest.raises(ValueError, match="shape"):
        write_item_embeddings(con, items, np.zeros((2, 8), np.float32), FakeEncoder())
