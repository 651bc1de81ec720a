"""item_embeddings through Dagster: incremental by text, flagged empty texts, blocking checks."""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from orchestration.apps.runner import materialize
from orchestration.defs.resources import DataSourceResource, WarehouseResource

TITLES = {"sku-0": "Red ceramic mug", "sku-1": "Blue ceramic mug", "sku-2": "", "sku-3": "Oak lantern", "sku-4": "Canvas tote bag"}


def _shop(folder, titles):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"user_id": f"user-{u}", "item_id": f"sku-{(u + s) % 5}", "timestamp": 1_700_000_000 + u * 1000 + s * 60}
        for u in range(6) for s in range(3)
    ]
    pd.DataFrame(rows).to_csv(folder / "interactions.csv", index=False)
    pd.DataFrame({"item_id": list(titles), "title": list(titles.values())}).to_csv(folder / "items.csv", index=False)
    return folder


def _embed(home, data, instance):
    resources = {"warehouse": WarehouseResource(home=str(home)), "data_source": DataSourceResource(source="generic", data=str(data))}
    # Everything but the models group, which needs months of history (test_model_assets.py covers it).
    result = materialize("not group:models and not group:ranking and not group:evaluation", resources=resources, instance=instance, log_level="WARNING")
    metadata = result.asset_materializations_for_node("item_embeddings")[0].metadata
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("item_embeddings")}
    return metadata, checks


def _counts(metadata):
    names = ("items", "items_newly_embedded", "items_from_cache", "items_with_empty_text")
    return tuple(metadata[name].value for name in names)


def test_item_embeddings_are_incremental(recsys_home, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    data = _shop(tmp_path / "shop", TITLES)
    first, checks = _embed(recsys_home, data, instance)
    assert checks == {"great_expectations": True}
    # Per item, adding up to the catalogue: 4 texts embedded now, none cached yet, 1 item without text.
    assert _counts(first) == (5, 4, 0, 1)
    assert first["dimension"].value == 384

    # One catalogue edit -> one new text; the three unchanged texts come from the cache.
    _shop(data, {**TITLES, "sku-3": "Oak lantern with glass panes"})
    edited, checks = _embed(recsys_home, data, instance)
    assert _counts(edited) == (5, 1, 3, 1)
    assert checks == {"great_expectations": True}

    with duckdb.connect(str(recsys_home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("select item_id, text, is_empty_text, vector from embeddings.item_embeddings order by item_id").df()
    assert rows.loc[rows.item_id == "sku-2", "is_empty_text"].item()
    assert rows.loc[rows.item_id == "sku-3", "text"].item() == "Oak lantern with glass panes"
    vectors = np.stack(rows.vector.to_numpy())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # The two mugs are closer to each other than to the tote bag.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[4]
