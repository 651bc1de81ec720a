"""A customer's view ingested after the champion was promoted changes that customer's next answer from the API.

The champion and its data come from the session's small synthetic shop (conftest.promoted), copied so that the
new events land in a home of this test's own. The view and the cart arrive as a generic-format file, go through
ingest and dbt as any new file does, and the running app picks the new marts up by their fingerprint.
"""

import shutil
import time

import dagster as dg
import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from orchestration.apps.runner import materialize
from orchestration.defs.resources import DataSourceResource, WarehouseResource
from orchestration.serving.api import create_app
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY, pseudonymize
from recmodels.recommender import RANKER
from recmodels.sequences import purchased_items


def _customer_and_last_event(home) -> tuple[str, pd.Timestamp]:
    """A shop customer id with batch recommendations, and the time of the newest clean event."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        raw = con.execute("select distinct customer_id from raw.order_lines where trim(customer_id) <> ''").fetchall()
        served = {row[0] for row in con.execute("select distinct user_id from ml.user_recommendations").fetchall()}
        newest = con.execute("select max(occurred_at) from marts.fct_interactions").fetchone()[0]
    return min(r for (r,) in raw if pseudonymize(r, DEV_PSEUDONYMIZATION_KEY) in served), pd.Timestamp(newest)


def _wait_for_new_data(client, version, seconds=60.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        health = client.get("/health").json()
        if health["data_version"] != version or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


def test_an_ingested_view_changes_the_customers_next_recommendations(promoted, tmp_path, monkeypatch):
    home = tmp_path / "recsys-home"
    shutil.copytree(promoted.home, home)
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.delenv("RECSYS_PSEUDONYMIZATION_KEY", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    customer, newest = _customer_and_last_event(home)

    with TestClient(create_app(str(home), reload_seconds=0)) as client:
        before_health = client.get("/health").json()
        before = client.get(f"/recommendations/{customer}", params={"k": 100}).json()["items"]
        service = client.app.state.champion.current.service
        bought = set(service.bundle.shop_ids(purchased_items(service.data.histories[service.user_key(customer)],
                                                             len(service.bundle.item_ids))))
        fresh = [item for item in before if item["item_id"] not in bought]
        viewed, carted = fresh[-1], fresh[-2]  # the lowest-ranked items the customer never bought
        why_before = client.get(f"/explain/{customer}/{viewed['item_id']}").json()
        assert {viewed["explanation"], carted["explanation"]} <= {"also_bought", "similar_description", "popular_now"}

        # The shop's log gains a view and a cart by that customer, an hour before the newest event (so the
        # service's as-of time, and with it every time-based feature, stays where it was).
        at = (newest - pd.Timedelta(hours=1)).isoformat()
        drop = tmp_path / "landing"
        drop.mkdir()
        pd.DataFrame([{"user_id": customer, "item_id": viewed["item_id"], "event_type": "view", "timestamp": at},
                      {"user_id": customer, "item_id": carted["item_id"], "event_type": "add_to_cart",
                       "timestamp": at}]).to_csv(drop / "interactions.csv", index=False)
        result = materialize("group:ingest or group:transforms", instance=dg.DagsterInstance.ephemeral(),
                             resources={"warehouse": WarehouseResource(home=str(home)),
                                        "data_source": DataSourceResource(source="generic", data=str(drop))},
                             log_level="WARNING", stdout_log=tmp_path / "dbt.log")
        assert result.success

        after_health = _wait_for_new_data(client, before_health["data_version"])
        assert after_health["data_version"] != before_health["data_version"]
        assert after_health["model_version"] == before_health["model_version"]  # the same champion
        assert after_health["as_of"] == before_health["as_of"]
        after = {item["item_id"]: item for item in
                 client.get(f"/recommendations/{customer}", params={"k": 100}).json()["items"]}
        assert (after[viewed["item_id"]]["explanation"], after[viewed["item_id"]]["reason"]) == (
            "viewed", "You viewed this")
        assert (after[carted["item_id"]]["explanation"], after[carted["item_id"]]["reason"]) == (
            "in_cart", "In your cart")
        why = client.get(f"/explain/{customer}/{viewed['item_id']}").json()
        assert why["explanation"] == "viewed" and why["because_of"] == viewed["item_id"]
        recommender = client.app.state.champion.current.service.bundle.recommender
        if recommender.config.behaviour:  # the ranker's features read the view, whoever orders the candidates
            assert why["features"]["user_item_views"] == 1
        if recommender.config.sequence_behaviour:  # the sequence models read the view as part of the history
            assert why["features"]["sasrec_score"] != pytest.approx(why_before["features"]["sasrec_score"])
        if recommender.serves == RANKER and recommender.config.behaviour:
            # A ranker that learned from views scores the viewed item from the view itself.
            assert after[viewed["item_id"]]["score"] != pytest.approx(viewed["score"])
        others = [i for i in before if i["item_id"] not in (viewed["item_id"], carted["item_id"])]
        assert all(after[i["item_id"]]["explanation"] == i["explanation"] for i in others)
