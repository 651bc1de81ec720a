"""The HTTP API over a promoted champion on a small synthetic shop: answers, validation, docs and reloading."""

import logging
import time

import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from orchestration.registry.promotion import BUNDLE_MODEL, current_champion, promote, rollback
from orchestration.registry.tracking import MLflowTracking
from orchestration.serving.api import create_app
from orchestration.serving.champion import Served
from orchestration.serving.service import RecommendationService
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY, pseudonymize
from orchestration.store.warehouse import Warehouse

ITEM_FIELDS = {"rank", "item_id", "title", "score", "explanation", "because_of", "reason"}


@pytest.fixture(scope="module")
def home(promoted):
    """A home whose registry has a champion (version 1), shared with other modules (conftest.promoted)."""
    return promoted.home


@pytest.fixture(scope="module")
def client(home):
    # Reloading is tested with its own app; this one must not pick up the versions that test registers.
    with TestClient(create_app(str(home), reload_seconds=3600)) as client:
        yield client


@pytest.fixture(scope="module")
def service(home):
    """A service of its own, to compare the API's answers with."""
    return RecommendationService.from_champion(Warehouse(home=str(home)), MLflowTracking(home=str(home)),
                                               DEV_PSEUDONYMIZATION_KEY)


def _customer(home) -> str:
    """A shop customer id, as the raw file has it, of a customer with batch recommendations (so with purchases)."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        raw = con.execute("select distinct customer_id from raw.order_lines where trim(customer_id) <> ''").fetchall()
        served = {row[0] for row in con.execute("select distinct user_id from ml.user_recommendations").fetchall()}
    return min(r for (r,) in raw if pseudonymize(r, DEV_PSEUDONYMIZATION_KEY) in served)


def _assert_items(items, k):
    assert [item["rank"] for item in items] == list(range(1, k + 1))
    assert all(set(item) == ITEM_FIELDS for item in items)
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)


def test_known_customer_gets_the_services_recommendations(client, service, home):
    customer = _customer(home)
    response = client.get(f"/recommendations/{customer}", params={"k": 7})
    assert response.status_code == 200
    body = response.json()
    assert body["known_user"] and body["strategy"] == "two-stage" and body["model_version"] == 1
    assert body["user_id"] == customer and body["history_length"] > 0
    _assert_items(body["items"], 7)
    expected = service.recommend_user(customer, k=7)["items"]
    assert [item["item_id"] for item in body["items"]] == expected["item_id"].tolist()
    assert [item["score"] for item in body["items"]] == pytest.approx(expected["score"].tolist(), abs=1e-6)
    assert [item["reason"] for item in body["items"]] == expected["reason"].tolist()


def test_unknown_customer_gets_the_flagged_popularity_fallback(client):
    body = client.get("/recommendations/no-such-customer", params={"k": 3}).json()
    assert body["known_user"] is False and body["strategy"].startswith("fallback:")
    assert body["history_length"] is None
    _assert_items(body["items"], 3)
    assert {item["explanation"] for item in body["items"]} == {"popular_now"}


def test_session_reports_unknown_items_and_ignores_them(client, service):
    known = [str(i) for i in service.bundle.item_ids[:3]]
    response = client.post("/recommendations/session", json={"items": [known[0], "NOT-AN-ITEM", *known[1:]], "k": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["unknown_items"] == ["NOT-AN-ITEM"] and body["text_only_items"] == []
    assert body["strategy"] == "two-stage"
    _assert_items(body["items"], 4)
    expected = service.recommend_session(known, k=4)["items"]
    assert [item["item_id"] for item in body["items"]] == expected["item_id"].tolist()
    # Only unknown items: the popularity fallback, still a 200.
    alone = client.post("/recommendations/session", json={"items": ["NOT-AN-ITEM"]}).json()
    assert alone["strategy"].startswith("fallback:") and len(alone["items"]) == 10


def test_similar_items_and_explanations(client, service, home):
    item = str(service.bundle.item_ids[0])
    body = client.get(f"/similar/{item}", params={"k": 5}).json()
    assert body["item_id"] == item and body["known_item"] and len(body["items"]) == 5
    assert item not in {row["item_id"] for row in body["items"]}
    assert [row["rank"] for row in body["items"]] == [1, 2, 3, 4, 5]
    assert all(row["score"] == pytest.approx((row["co_purchase"] + row["text_cosine"]) / 2, abs=2e-6)
               for row in body["items"])

    customer = _customer(home)
    first = client.get(f"/recommendations/{customer}", params={"k": 1}).json()["items"][0]
    why = client.get(f"/explain/{customer}/{first['item_id']}").json()
    assert why["candidate"] and why["rank"] == 1 and why["explanation"] == first["explanation"]
    assert set(why["features"]) == set(service.bundle.recommender.ranker.feature_names)


def test_health_model_and_docs(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_version"] == 1 and health["as_of"].startswith("20")
    assert health["as_of"] == health["data_as_of"]  # nothing posted to this app
    model = client.get("/model").json()
    assert model["version"] == 1 and model["model"] == BUNDLE_MODEL
    assert model["metrics"]["ndcg@10"] > 0 and model["data_version"] and model["promoted_at"]
    assert "sasrec" in model["sources"] and model["n_candidates"] > 0 and len(model["features"]) > 5
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/health", "/model", "/recommendations/{user_id}", "/recommendations/session",
                                  "/similar/{item_id}", "/explain/{user_id}/{item_id}", "/popular",
                                  "/customers/{user_id}/history", "/events", "/admin/reload",
                                  "/admin/rollback"}
    assert "RecommendedItem" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(("method", "path", "payload", "status"), [
    ("get", "/recommendations/c1?k=0", None, 422),
    ("get", "/recommendations/c1?k=101", None, 422),
    ("get", "/recommendations/c1?k=abc", None, 422),
    ("get", "/recommendations/c1?k=2.5", None, 422),
    ("get", "/recommendations/" + "x" * 101, None, 422),
    ("get", "/recommendations/%20", None, 422),  # a blank id
    ("get", "/explain/%20/item", None, 422),
    ("get", "/similar/" + "x" * 101, None, 422),
    ("get", "/similar/NOT-AN-ITEM", None, 404),
    ("get", "/explain/c1/NOT-AN-ITEM", None, 404),
    ("get", "/explain/c1/" + "x" * 101, None, 422),
    ("post", "/recommendations/session", {"items": []}, 422),
    ("post", "/recommendations/session", {"items": ["a"] * 201}, 422),
    ("post", "/recommendations/session", {"items": ["a"], "k": 0}, 422),
    ("post", "/recommendations/session", {"items": ["a"], "k": 101}, 422),
    ("post", "/recommendations/session", {"items": ["a"], "k": "many"}, 422),
    ("post", "/recommendations/session", {"items": [""]}, 422),
    ("post", "/recommendations/session", {"items": ["   "]}, 422),
    ("post", "/recommendations/session", {"items": ["x" * 101]}, 422),
    ("post", "/recommendations/session", {"items": [None]}, 422),
    ("post", "/recommendations/session", {"items": "a"}, 422),
    ("post", "/recommendations/session", {"k": 3}, 422),
    ("post", "/recommendations/session", ["a", "b"], 422),
    ("post", "/recommendations/session", b"not json", 422),
    ("post", "/recommendations/session", b"[" * 100_000, 400),
    ("post", "/recommendations/session", {"events": []}, 422),
    ("post", "/recommendations/session", {"events": [{"item_id": "a"}]}, 422),  # no event_type
    ("post", "/recommendations/session", {"events": [{"event_type": "view"}]}, 422),  # no item_id
    ("post", "/recommendations/session", {"events": [{"item_id": "a", "event_type": "view", "timestamp": "soon"}]},
     422),
    ("post", "/recommendations/session", {"events": [{"item_id": "a", "event_type": "view"}] * 201}, 422),
    ("post", "/recommendations/session", {"items": ["a"], "events": [{"item_id": "a", "event_type": "view"}]}, 422),
    ("post", "/recommendations/session", {"items": ["a"], "user_id": "c1"}, 422),  # a customer's session is typed
    ("post", "/recommendations/session", {"events": [{"item_id": "a", "event_type": "view"}], "user_id": " "}, 422),
    ("get", "/recommendations/session", None, 200),  # a customer called "session": unknown, the fallback
    ("delete", "/recommendations/c1", None, 405),
    ("get", "/nothing-here", None, 404),
])
def test_bad_input_is_a_json_4xx_never_a_5xx(client, method, path, payload, status):
    if isinstance(payload, bytes):
        response = client.request(method, path, content=payload, headers={"content-type": "application/json"})
    else:
        response = client.request(method, path, json=payload)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    if status != 200:
        assert "detail" in response.json()


def test_numeric_item_ids_and_padding_are_accepted(client, service):
    numeric = next(str(i) for i in service.bundle.item_ids if str(i).isdigit())
    as_number = client.post("/recommendations/session", json={"items": [int(numeric)], "k": 3}).json()
    padded = client.post("/recommendations/session", json={"items": [f"  {numeric} "], "k": 3}).json()
    assert as_number["unknown_items"] == padded["unknown_items"] == []
    assert as_number["items"] == padded["items"]


def test_a_value_error_from_the_service_is_a_422(client, monkeypatch):
    served = client.app.state.champion.current

    def broken(*args, **kwargs):
        raise ValueError("k must be between 1 and 100, got 0")

    monkeypatch.setattr(served.service, "user_top", broken)
    response = client.get("/recommendations/c1")
    assert response.status_code == 422
    assert response.json() == {"detail": [{"type": "value_error", "loc": [], "msg": "k must be between 1 and 100, got 0"}]}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_need_no_network(client, page):
    import re

    html = client.get(page).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"(?:url|spec-url)\s*[:=]\s*'([^']+)'", html)
    scripts = [a for a in assets if a.endswith((".js", ".css"))]
    assert scripts, html  # the page does load assets, and every one from the app itself
    assert all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    assert all(client.get(a).status_code == 200 for a in scripts)


def test_documented_error_bodies_are_the_real_ones(client):
    from orchestration.serving.api import ERROR_RESPONSES, EXAMPLE_CUSTOMER, UNKNOWN_ITEM

    def example(status):
        return ERROR_RESPONSES[status]["content"]["application/json"]["example"]

    assert client.get(f"/similar/{UNKNOWN_ITEM}").json() == example(404)
    assert client.get(f"/recommendations/{EXAMPLE_CUSTOMER}?k=0").json() == example(422)
    nested = client.post("/recommendations/session", content=b"[" * 100_000, headers={"content-type": "application/json"})
    assert nested.status_code == 400 and nested.json() == example(400)


def test_the_documented_examples_exist_in_the_demo_shop(tmp_path):
    from orchestration.ingest.synthetic import SyntheticShopConfig, write_synthetic_shop
    from orchestration.serving.schemas import EXAMPLE_CUSTOMER, EXAMPLE_ITEM, EXAMPLE_SESSION

    import pandas as pd

    write_synthetic_shop(tmp_path, SyntheticShopConfig())  # the demo's default shop
    # The synthetic shop is dirty on purpose (malformed lines among them); the clean ones hold the examples.
    lines = pd.read_csv(tmp_path / "order_lines.csv.gz", dtype=str, on_bad_lines="skip")
    customer_column = next(c for c in lines.columns if "customer" in c.lower())
    item_column = next(c for c in lines.columns if "stock" in c.lower() or c.lower() == "item_id")
    assert EXAMPLE_CUSTOMER in set(lines[customer_column].str.strip())
    assert {EXAMPLE_ITEM, *EXAMPLE_SESSION} <= set(lines[item_column].str.strip())


def test_without_a_champion_every_endpoint_answers_503(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with TestClient(create_app(str(tmp_path / "empty-home"), reload_seconds=3600)) as empty:
        for path in ("/health", "/model", "/recommendations/c1", "/similar/i1", "/explain/c1/i1"):
            response = empty.get(path)
            assert response.status_code == 503 and "no champion" in response.json()["detail"]
        assert empty.post("/recommendations/session", json={"items": ["a"]}).status_code == 503


def _wait_for_version(client, version, seconds=60.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        health = client.get("/health").json()
        if health["model_version"] == version or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


# Last in the module: it moves the champion alias of the shared home (and puts it back).
def test_the_app_follows_the_champion_alias_and_survives_a_broken_version(home, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestration.serving.api")
    registry = MLflowTracking(home=str(home)).client()
    first = current_champion(registry)
    app = create_app(str(home), reload_seconds=0)
    with TestClient(app) as watching:
        assert watching.get("/health").json()["model_version"] == 1
        # The same bundle registered again is a new version; promoting it moves the alias.
        source = registry.get_model_version(BUNDLE_MODEL, "1")
        second = registry.create_model_version(BUNDLE_MODEL, source=source.source, run_id=source.run_id)
        promote(registry, int(second.version), first["metrics"], first["data_version"])
        assert _wait_for_version(watching, 2)["model_version"] == 2
        assert watching.get("/model").json()["version"] == 2
        assert watching.get("/recommendations/c1").json()["model_version"] == 2

        # A version whose files are no bundle: the reload fails, is logged, and version 2 keeps serving.
        (tmp_path / "not-a-bundle").mkdir()
        (tmp_path / "not-a-bundle" / "README").write_text("nothing to load\n")
        broken = registry.create_model_version(BUNDLE_MODEL, source=(tmp_path / "not-a-bundle").as_uri(),
                                               run_id=source.run_id)
        promote(registry, int(broken.version), first["metrics"], first["data_version"])
        holder = app.state.champion
        watching.get("/health")  # starts a check
        holder.wait(timeout=60)
        assert watching.get("/health").json()["model_version"] == 2
        assert any("failed" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)

        assert rollback(registry)["version"] == 2
        rollback(registry)
        assert _wait_for_version(watching, 1)["model_version"] == 1
    assert current_champion(registry)["version"] == 1


def test_typed_session_events_feed_the_explanations(client, service):
    known = [str(i) for i in service.bundle.item_ids[:3]]
    events = [{"item_id": known[0], "event_type": "view"}, {"item_id": known[1], "event_type": "cart"},
              {"item_id": "NOT-AN-ITEM", "event_type": "view"}, {"item_id": known[2], "event_type": " VIEW "}]
    body = client.post("/recommendations/session", params={"include_seen": True},
                       json={"events": events, "k": 100}).json()
    assert body["strategy"] == "two-stage" and body["unknown_items"] == ["NOT-AN-ITEM"]
    assert body["user_id"] is None and body["known_user"] is None  # anonymous
    why = {item["item_id"]: item for item in body["items"]}
    assert why[known[1]]["explanation"] == "in_cart" and why[known[1]]["reason"] == "In your cart"
    assert {why[i]["explanation"] for i in (known[0], known[2])} == {"viewed"}
    assert why[known[0]]["reason"] == "You viewed this" and why[known[0]]["because_of"] == known[0]
    assert "bought_before" not in {item["explanation"] for item in body["items"]}
    # Without include_seen the session's own items are left out, as for the items shape.
    default = client.post("/recommendations/session", json={"events": events, "k": 5}).json()
    assert not {item["item_id"] for item in default["items"]} & set(known) and len(default["items"]) == 5
    # The service answers the same.
    expected = service.recommend_events([(e["item_id"], e["event_type"].strip().lower(), None) for e in events], k=5)
    assert [item["item_id"] for item in default["items"]] == expected["items"]["item_id"].tolist()
    # A purchase in the session is one: bought before; a cart bought later in the session is no longer open.
    bought = client.post("/recommendations/session", params={"include_seen": True}, json={"k": 100, "events": [
        {"item_id": known[1], "event_type": "cart", "timestamp": "2024-01-01T10:00:00"},
        {"item_id": known[1], "event_type": "purchase", "timestamp": "2024-01-01T10:05:00+00:00"}]}).json()
    assert {i["item_id"]: i["explanation"] for i in bought["items"]}[known[1]] == "bought_before"


def test_a_customers_session_adds_to_their_history(client, service, home):
    customer = _customer(home)
    item = str(service.bundle.item_ids[-1])
    body = client.post("/recommendations/session", params={"include_seen": True},
                       json={"user_id": customer, "events": [{"item_id": item, "event_type": "view"}], "k": 100}).json()
    assert body["user_id"] == customer and body["known_user"] is True and body["strategy"] == "two-stage"
    reasons = {row["item_id"]: row["explanation"] for row in body["items"]}
    bought = set(service.history(customer, n=100)["items"]["item_id"])
    assert reasons[item] == ("bought_before" if item in bought else "viewed")
    assert any(reasons[i] == "bought_before" for i in bought if i in reasons)  # their purchases still count


@pytest.mark.parametrize("event_type", ["click", "refund", ""])
def test_an_unknown_event_type_is_a_422_naming_it_and_the_allowed_ones(client, event_type):
    response = client.post("/recommendations/session", json={"events": [{"item_id": "a", "event_type": event_type}]})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "events", 0, "event_type"]
    assert repr(event_type) in error["msg"] and "view, cart, favourite, purchase" in error["msg"]


def test_health_tells_the_time_of_the_newest_event_posted_since_the_data(client):
    holder = client.app.state.champion
    served = holder.current
    # A service of its own, so the events recorded here reach no other test's answers.
    own = RecommendationService(served.service.bundle, served.service.data, DEV_PSEUDONYMIZATION_KEY, served.version)
    later = own.data.as_of + pd.Timedelta(hours=2)
    item = str(own.bundle.item_ids[0])
    holder.current = Served(own, served.champion)
    try:
        own.record_events(pd.DataFrame({"event_id": ["h-1"], "user_id": [None], "session_id": ["s-1"],
                                        "item_id": [item], "event_type": ["view"], "occurred_at": [later],
                                        "quantity": [None], "price": [None]}))
        health = client.get("/health").json()
    finally:
        holder.current = served
    assert health["as_of"] == (later + pd.Timedelta(seconds=1)).isoformat()
    assert health["data_as_of"] == own.data.as_of.isoformat()
