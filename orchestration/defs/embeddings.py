"""Item text embeddings: BERT vectors of every item's description, incremental through a warehouse cache."""

import sys

import dagster as dg
from dagster import AssetExecutionContext

from orchestration.defs.quality import expectation_metadata
from orchestration.defs.resources import TextEncoderResource, WarehouseResource
from orchestration.quality.expectations import embedding_frame, embedding_suite, validate_frame
from orchestration.store.embedding_cache import (
    ITEM_EMBEDDINGS_TABLE,
    embed_with_cache,
    read_item_embeddings,
    write_item_embeddings,
)
from recmodels.item_text import build_item_texts
from recmodels.similarity import nearest_neighbours

EXAMPLE_ITEMS = 8  # rows of the nearest-neighbour table shown in the UI


@dg.asset(deps=[dg.AssetKey("dim_items")], group_name="embeddings", kinds={"pytorch", "duckdb"}, pool="item_embeddings")
def item_embeddings(
    context: AssetExecutionContext, warehouse: WarehouseResource, text_encoder: TextEncoderResource
) -> dg.MaterializeResult:
    """One L2-normalised BERT vector per item of dim_items; only new or changed texts are embedded."""
    encoder = text_encoder.load()
    with warehouse.connect() as con:
        items = con.execute(
            "select item_id, title, description, category, brand from marts.dim_items order by item_id"
        ).df()
        texts = build_item_texts(items)
        # A progress bar helps in a terminal; in the UI's captured logs it would only be noise.
        vectors, stats = embed_with_cache(con, texts["text"].tolist(), encoder, show_progress=sys.stderr.isatty())
        write_item_embeddings(con, texts, vectors, encoder)
    # Per item, so the three counts add up to the catalogue; the encoder's own work is in distinct texts.
    empty = texts["is_empty_text"].to_numpy(dtype=bool)
    encoded = stats.encoded_mask()
    context.log.info(f"{stats.n_embedded} distinct texts embedded, {stats.n_cached} from the cache, "
                     f"model {encoder.model_id}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(texts),
            "items": len(texts),
            "items_newly_embedded": int((encoded & ~empty).sum()),
            "items_from_cache": int((~encoded & ~empty).sum()),
            "items_with_empty_text": int(empty.sum()),
            "distinct_texts_encoded": stats.n_embedded,
            "texts_per_s": stats.texts_per_s,
            "embed_seconds": stats.embed_seconds,
            "device": str(encoder.device),
            "model": encoder.model_id,
            "dimension": encoder.dim,
            "table": ITEM_EMBEDDINGS_TABLE,
            "nearest_neighbours": dg.MetadataValue.md(_neighbour_table(items, texts, vectors)),
        }
    )


def _neighbour_table(items, texts, vectors) -> str:
    """A few items with text and their three nearest neighbours, each as item id and title."""
    with_text = texts.index[~texts["is_empty_text"]].to_numpy()
    if len(with_text) < 2:
        return "Fewer than two items have text."
    examples = with_text[:: max(1, len(with_text) // EXAMPLE_ITEMS)][:EXAMPLE_ITEMS]
    neighbours, scores = nearest_neighbours(vectors[with_text], queries=[list(with_text).index(i) for i in examples], k=3)
    titles = items["title"].fillna("").astype(str)

    def label(row: int) -> str:
        title = titles.iat[row][:40] or texts.at[row, "text"][:40]
        return f"{items.at[row, 'item_id']} {title}".replace("|", "/")

    rows = ["| item | 3 most similar items (cosine) |", "| --- | --- |"]
    for example, row_neighbours, row_scores in zip(examples, neighbours, scores):
        similar = "; ".join(f"{label(with_text[n])} ({score:.2f})" for n, score in zip(row_neighbours, row_scores))
        rows.append(f"| {label(example)} | {similar} |")
    return "\n".join(rows)


@dg.asset_check(asset=item_embeddings, name="great_expectations", blocking=True)
def item_embeddings_expectations(warehouse: WarehouseResource, text_encoder: TextEncoderResource) -> dg.AssetCheckResult:
    """No NaN/inf, unit norms (±1e-3), one vector per dim_items item, width = the model's hidden size."""
    with warehouse.connect(read_only=True) as con:
        meta, matrix = read_item_embeddings(con)
        catalogue = [row[0] for row in con.execute("select item_id from marts.dim_items").fetchall()]
    outcome = validate_frame(embedding_frame(meta["item_id"], matrix), embedding_suite(catalogue, text_encoder.load().dim))
    return dg.AssetCheckResult(
        passed=outcome.success,
        description=outcome.summary(),
        metadata={"vectors": len(meta), "catalogue_items": len(catalogue), **expectation_metadata(outcome)},
    )
