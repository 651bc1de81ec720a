"""Serving fast and current, on the shared promoted shop's champion (conftest.promoted): kept answers equal to the
batch table, events recorded live reflected in the next answer, micro-batches ranking as alone, and a reload under
concurrent requests that drops none of them."""

import shutil
import threading
import time
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from orchestration.registry.promotion import BUNDLE_MODEL, current_champion, promote
from orchestration.registry.tracking import MLflowTracking
from orchestration.serving.answers import TOP
from orchestration.serving.api import create_app
from orchestration.serving.auth import ApiAccess
from orchestration.serving.batching import RankRequest
from orchestration.serving.service import SESSION_KEY, RecommendationService
from orchestration.serving.shop import model_histories
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY, pseudonymize, pseudonymize_session
from orchestration.store.warehouse import Warehouse
from recmodels.explain import behaviour_evidence
from recmodels.sequences import purchased_items


def _service(home) -> RecommendationService:
    return RecommendationService.from_champion(Warehouse(home=str(home)), MLflowTracking(home=str(home)),
                                               DEV_PSEUDONYMIZATION_KEY)


@pytest.fixture(scope="module")
def service(promoted):
    """A service of this module's own: recording events changes only its memory, never the shared warehouse."""
    return _service(promoted.home)


def _raw_customers(home) -> dict[str, str]:
    """Pseudonym -> the shop's own customer id, for every customer in the raw tables."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        raw = con.execute("select distinct customer_id from raw.order_lines where trim(customer_id) <> ''").fetchall()
    return {pseudonymize(r, DEV_PSEUDONYMIZATION_KEY): r for (r,) in raw}


def _batch_table(home) -> pd.DataFrame:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select * from ml.user_recommendations order by user_id, rank").df()


def _events(**columns) -> pd.DataFrame:
    """One recorded event per row; unnamed columns take their usual empty values."""
    n = len(next(iter(columns.values())))
    defaults = {"event_id": [None] * n, "user_id": [None] * n, "session_id": [None] * n, "event_type": ["view"] * n,
                "occurred_at": [pd.Timestamp("2030-01-01")] * n, "quantity": [1.0] * n, "price": [None] * n}
    return pd.DataFrame({**defaults, **columns})


def test_the_apis_top_k_is_the_batch_tables_for_every_customer(promoted):
    home = promoted.home
    table = _batch_table(home)
    k = int(table.groupby("user_id").size().max())
    raw = _raw_customers(home)
    assert set(table["user_id"]) <= set(raw)
    with TestClient(create_app(str(home), reload_seconds=3600)) as client:
        holder = client.app.state.champion  # warmed before it served: answers are the kept ones
        assert len(holder.current.service.answers) == len(set(holder.current.service.data.histories)
                                                          & set(holder.current.service.data.customers))
        for pseudonym, rows in table.groupby("user_id"):
            body = client.get(f"/recommendations/{raw[pseudonym]}", params={"k": k}).json()
            assert [item["item_id"] for item in body["items"]] == rows["item_id"].tolist(), pseudonym
            assert [item["explanation"] for item in body["items"]] == rows["explanation"].tolist()
            np.testing.assert_allclose([item["score"] for item in body["items"]], rows["score"], atol=1e-6)
    # Ranked on demand rather than kept, the answer is the same to the bit.
    fresh = _service(home)
    for pseudonym, rows in list(table.groupby("user_id"))[:20]:
        items = fresh.recommend_user(raw[pseudonym], k=k)["items"]
        assert items["item_id"].tolist() == rows["item_id"].tolist()
        np.testing.assert_array_equal(items["score"].to_numpy(), rows["score"].to_numpy())


def _customer_with_candidates(service, promoted) -> tuple[str, str, pd.DataFrame]:
    """(shop customer id, pseudonym, their top 100) of a customer with a history."""
    raw = _raw_customers(promoted.home)
    pseudonym = next(key for key in sorted(raw) if key in service.data.histories)
    return raw[pseudonym], pseudonym, service.recommend_user(raw[pseudonym], k=100)["items"]


def test_a_recorded_purchase_counts_in_the_customers_next_answer(service, promoted):
    customer, pseudonym, before = _customer_with_candidates(service, promoted)
    n_items = len(service.bundle.item_ids)
    bought = set(service.bundle.shop_ids(purchased_items(service.data.histories[pseudonym], n_items)))
    item = next(i for i in before["item_id"] if i not in bought)
    assert service.explain(customer, item)["features"]["user_item_purchases"] == 0
    length = service.recommend_user(customer)["history_length"]
    as_of = service.as_of

    recorded = service.record_events(_events(event_id=["p-1"], user_id=[f" {customer}.0 "], item_id=[item],
                                             event_type=["purchase"], quantity=[2.0], price=[3.5],
                                             occurred_at=[as_of + pd.Timedelta(minutes=5)]))
    assert recorded == 1
    after = service.recommend_user(customer, k=100)
    assert after["history_length"] == length + 1
    assert service.history(customer, n=1)["items"]["item_id"].tolist() == [item]
    why = service.explain(customer, item)
    assert why["features"]["user_item_purchases"] == 1 and why["features"]["user_days_since_last"] < 1 / 24
    assert why["explanation"] == "bought_before" and why["reason"] == "You bought this before"
    reasons = dict(zip(after["items"]["item_id"], after["items"]["explanation"]))
    assert reasons.get(item, "bought_before") == "bought_before"
    assert service.as_of == as_of + pd.Timedelta(minutes=5, seconds=1)
    # The same event again (a retried POST) changes nothing.
    assert service.record_events(_events(event_id=["p-1"], user_id=[customer], item_id=[item],
                                         event_type=["purchase"])) == 0
    assert service.recommend_user(customer)["history_length"] == length + 1


def test_a_recorded_view_is_explained_and_anonymous_events_keep_their_sessions_pseudonym(service, promoted):
    customer, pseudonym, before = _customer_with_candidates(service, promoted)
    plain = before[~before["explanation"].isin(["bought_before", "in_cart", "viewed"])]
    viewed = plain["item_id"].iloc[-1]
    assert service.record_events(_events(event_id=["v-1", "v-2", "v-3"], user_id=[customer, None, None],
                                         session_id=["web-9", "web-9", None],
                                         item_id=[viewed, viewed, "NOT-AN-ITEM"])) == 2  # no id, unknown item
    after = service.recommend_user(customer, k=100)["items"].set_index("item_id")
    if viewed in after.index:
        assert (after.at[viewed, "explanation"], after.at[viewed, "reason"]) == ("viewed", "You viewed this")
    assert service.explain(customer, viewed)["explanation"] == "viewed"
    behaviour = service.recorded().behaviour
    session = pseudonymize_session("web-9", DEV_PSEUDONYMIZATION_KEY)
    assert set(behaviour["user_key"]) == {pseudonym, session}
    assert behaviour.loc[behaviour["user_key"] == session, "item"].tolist() == list(service.bundle.internal_ids([viewed]))


def test_a_customer_after_interleaved_batches_is_the_warehouse_path_over_those_events(service, promoted):
    """Many events of one customer in one batch, interleaved with another's, over two batches: their customer is
    the one the every-customer pandas path builds from the warehouse's rows plus those events, and their answer
    is that of a service given every event at once."""
    raw = _raw_customers(promoted.home)
    one, other = [key for key in sorted(raw) if key in service.data.histories][2:4]
    items = [str(i) for i in service.bundle.item_ids[:5]]
    start = service.data.as_of + pd.Timedelta(hours=1)
    times = [start + pd.Timedelta(minutes=m) for m in (3, 1, 3, 2, 4, 0, 3, 3)]  # ties and out of order
    first = _events(event_id=[f"i-{n}" for n in range(8)], user_id=[raw[one], raw[other]] * 4,
                    item_id=items[:4] * 2, event_type=["view", "purchase", "cart", "view", "purchase", "cart",
                                                       "favourite", "view"], occurred_at=times)
    second = _events(event_id=["i-8", "i-9", "i-1"], user_id=[raw[one], raw[one], raw[one]], item_id=items[2:5],
                     event_type=["cart", "view", "view"], occurred_at=[start, start, start])  # i-1 again: once
    mine = _service(promoted.home)
    assert mine.record_events(first) == 8 and mine.record_events(second) == 2
    recorded = mine.recorded()
    bundle = mine.bundle
    for key in (one, other):
        customer = mine._customer(key)
        stored = mine._stored(key)
        purchases = recorded.purchases[recorded.purchases["user_key"] == key]
        behaviour = recorded.behaviour[recorded.behaviour["user_key"] == key]
        events = pd.concat([stored.events.frame(), purchases[list(stored.events.columns)]], ignore_index=True) \
            .sort_values("occurred_at", kind="stable")
        views = pd.concat([stored.behaviour.frame(), behaviour[list(stored.behaviour.columns)]], ignore_index=True) \
            .sort_values("occurred_at", kind="stable")
        as_tokens = bundle.recommender.config.sequence_behaviour and len(mine.data.behaviour) > 0
        np.testing.assert_array_equal(customer.history, model_histories(bundle, events, views, as_tokens)[key])
        for got, expected in zip((customer.evidence["viewed"], customer.evidence["in_cart"]),
                                 behaviour_evidence(views, events)):
            np.testing.assert_array_equal(got, expected)
        assert customer.events["item"].tolist() == events["item"].tolist()
        assert customer.behaviour["item"].tolist() == views["item"].tolist()
        newest = max(purchases["occurred_at"].max(), behaviour["occurred_at"].max())
        assert customer.as_of == max(mine.data.as_of, newest + pd.Timedelta(seconds=1))
    at_once = _service(promoted.home)
    at_once.adopt(recorded)
    for key in (one, other):
        pd.testing.assert_frame_equal(mine.recommend_user(raw[key], k=20)["items"],
                                      at_once.recommend_user(raw[key], k=20)["items"])
        assert mine.history(raw[key], n=5)["items"]["item_id"].tolist() \
            == at_once.history(raw[key], n=5)["items"]["item_id"].tolist()


def test_a_customer_rebuilt_while_an_event_is_recorded_is_not_kept(service, promoted, monkeypatch):
    """The race a lazy rebuild opens: an event recorded while the customer is being rebuilt from the events
    before it. The rebuilt customer (and an answer ranked from it) is not kept; the next read sees the event."""
    import orchestration.serving.service as service_module

    raw = _raw_customers(promoted.home)
    key = [key for key in sorted(raw) if key in service.data.histories][4]
    mine = _service(promoted.home)
    item = str(mine.bundle.item_ids[7])
    at = mine.data.as_of + pd.Timedelta(hours=2)
    assert mine.record_events(_events(event_id=["race-1"], user_id=[raw[key]], item_id=[item],
                                      event_type=["purchase"], occurred_at=[at])) == 1
    build = service_module.with_pending

    def build_while_recording(before, key_, pending, bundle, shop_has_behaviour):
        monkeypatch.setattr(service_module, "with_pending", build)  # once
        mine.record_events(_events(event_id=["race-2"], user_id=[raw[key]], item_id=[item],
                                   event_type=["purchase"], occurred_at=[at + pd.Timedelta(minutes=1)]))
        return build(before, key_, pending, bundle, shop_has_behaviour)

    monkeypatch.setattr(service_module, "with_pending", build_while_recording)
    stale, generation = mine._current(key)
    assert generation != mine.answers.generation(key) and key in mine._waiting
    mine.answers.keep(key, np.empty(0, dtype=TOP), generation)
    assert mine.answers.get(key) is None  # ranked before race-2: not kept
    fresh = mine._customer(key)
    assert len(fresh.events) == len(stale.events) + 1 and fresh.as_of == at + pd.Timedelta(minutes=1, seconds=1)
    assert len(fresh.history) == len(mine.data.histories[key]) + 2  # a purchase is in every kind of history
    assert mine.recommend_user(raw[key])["history_length"] == len(fresh.history)
    assert mine.answers.get(key) is not None  # ranked after both: kept


def test_reads_beside_recording_keep_no_answer_older_than_the_events(service, promoted):
    """Readers rank and keep answers while a writer records events for the same customers: afterwards every
    customer's answer, kept or not, is that of a service given every event at once."""
    raw = _raw_customers(promoted.home)
    customers = [raw[key] for key in sorted(raw) if key in service.data.histories][5:8]
    mine = _service(promoted.home)
    items = [str(i) for i in mine.bundle.item_ids[10:30]]
    start, stop, failures = mine.data.as_of + pd.Timedelta(hours=3), threading.Event(), []

    def read() -> None:
        try:
            while not stop.is_set():
                for customer in customers:
                    mine.recommend_user(customer, k=10)
                    mine.history(customer, n=3)
        except Exception as error:  # the test fails on it below
            failures.append(error)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for n in range(15):
        kinds = ["view", "cart", "purchase", "favourite", "view"]
        assert mine.record_events(_events(
            event_id=[f"rw-{n}-{i}" for i in range(5)], user_id=[customers[(n + i) % 3] for i in range(5)],
            item_id=[items[(n * 5 + i) % len(items)] for i in range(5)], event_type=kinds,
            occurred_at=[start + pd.Timedelta(minutes=n)] * 5)) == 5
        time.sleep(0.02)
    stop.set()
    for reader in readers:
        reader.join()
    assert not failures
    at_once = _service(promoted.home)
    at_once.adopt(mine.recorded())
    for customer in customers:
        pd.testing.assert_frame_equal(mine.recommend_user(customer, k=20)["items"],
                                      at_once.recommend_user(customer, k=20)["items"])


def test_a_session_ranks_alike_alone_and_in_a_batch(service, promoted):
    rng = np.random.default_rng(4)
    items = [str(i) for i in service.bundle.item_ids]
    sessions = [service.session_items(list(rng.choice(items, size=4, replace=False)))[0] for _ in range(6)]
    nobody = service._customer(SESSION_KEY)
    requests = [RankRequest(h, nobody.events, nobody.behaviour, service.data.as_of, True) for h in sessions]
    # Two requests of one customer with different events, as two concurrent typed sessions would be.
    _, pseudonym, _ = _customer_with_candidates(service, promoted)
    customer = service._customer(pseudonym)
    events = customer.events.frame()
    extra = events.tail(1).assign(occurred_at=service.data.as_of - pd.Timedelta(seconds=1))
    requests += [RankRequest(customer.history, customer.events, customer.behaviour, service.data.as_of),
                 RankRequest(customer.history, pd.concat([events, extra]), customer.behaviour, service.data.as_of)]
    together = [ranked.frame() for ranked in service._rank_requests(requests)]
    for request, ranked in zip(requests, together):
        pd.testing.assert_frame_equal(ranked, service._rank_requests([request])[0].frame())
    # Each read its own events: the one with an extra purchase counts one more.
    assert together[-1]["user_events"].iloc[0] == together[-2]["user_events"].iloc[0] + 1
    for history, ranked in zip(sessions, together):
        top = service.recommend_session([str(i) for i in service.bundle.shop_ids(history)], k=10)["items"]
        assert top["item_id"].tolist() == [str(i) for i in service.bundle.shop_ids(ranked["item"].head(10))]


def test_a_reload_under_load_drops_no_request_and_keeps_recorded_events(promoted, tmp_path, monkeypatch):
    home = tmp_path / "recsys-home"
    shutil.copytree(promoted.home, home)
    monkeypatch.delenv("RECSYS_PSEUDONYMIZATION_KEY", raising=False)
    raw = _raw_customers(home)
    items = [str(i) for i in _batch_table(home)["item_id"].unique()[:8]]
    registry = MLflowTracking(home=str(home)).client()
    first = current_champion(registry)
    with TestClient(create_app(str(home), reload_seconds=0)) as client:
        holder = client.app.state.champion
        customers = [raw[key] for key in sorted(raw) if key in holder.current.service.data.histories][:10]
        length = client.get(f"/recommendations/{customers[0]}").json()["history_length"]
        assert holder.record_events(_events(event_id=["r-1"], user_id=[customers[0]], item_id=[items[0]],
                                            event_type=["purchase"])) == 1
        statuses, versions, stop = [], set(), threading.Event()

        def hammer(offset: int) -> None:
            while not stop.is_set():
                customer = customers[offset % len(customers)]
                answer = client.get(f"/recommendations/{customer}")
                session = client.post("/recommendations/session", json={"items": items[offset % 4:][:3], "k": 5})
                statuses.extend([answer.status_code, session.status_code])
                versions.add(answer.json().get("model_version"))
                offset += 1

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        source = registry.get_model_version(BUNDLE_MODEL, "1")
        second = registry.create_model_version(BUNDLE_MODEL, source=source.source, run_id=source.run_id)
        promote(registry, int(second.version), first["metrics"], first["data_version"])
        deadline = time.monotonic() + 300
        while holder.current.version != int(second.version) and time.monotonic() < deadline:
            client.get("/health")  # starts a check when none runs
            holder.wait(timeout=300)
        answered = len(statuses)
        while len(statuses) < answered + 8:  # a few answers from the new version too
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
        assert holder.current.version == int(second.version)
        assert statuses and set(statuses) == {200} and versions >= {int(second.version)}
        # The event recorded by the old version's service is in the new one's answers.
        assert client.get(f"/recommendations/{customers[0]}").json()["history_length"] == length + 1


def test_an_event_one_worker_took_is_in_the_next_answer_of_another(promoted, tmp_path, monkeypatch):
    # Two apps over one home, as two workers of `recsys serve --workers 2`: one landing folder, a model each.
    home = tmp_path / "recsys-home"
    shutil.copytree(promoted.home, home)
    monkeypatch.delenv("RECSYS_PSEUDONYMIZATION_KEY", raising=False)
    token = "writer-token-0123456789"
    access = ApiAccess.from_environment({"RECSYS_API_TOKENS": f"{token}:read+events"})
    auth = {"Authorization": f"Bearer {token}"}
    raw = _raw_customers(home)
    item = str(_batch_table(home)["item_id"].iloc[0])
    now = datetime.now(UTC).isoformat()
    bought = {"event_id": "w-1", "item_id": item, "event_type": "purchase", "timestamp": now, "quantity": 2}
    with TestClient(create_app(str(home), reload_seconds=3600, access=access)) as first, \
            TestClient(create_app(str(home), reload_seconds=3600, access=access)) as second:
        known = first.app.state.champion.current.service.data.histories
        customer = next(raw[key] for key in sorted(raw) if key in known)
        length = second.get(f"/recommendations/{customer}").json()["history_length"]
        assert first.post("/events", json={"events": [{**bought, "user_id": customer}]}, headers=auth).json() \
            == {"accepted": 1, "rejected": []}
        assert second.get(f"/recommendations/{customer}").json()["history_length"] == length + 1
        latest = second.get(f"/customers/{customer}/history?n=1").json()["items"][0]
        assert (latest["item_id"], latest["quantity"]) == (item, 2)
        # The same event posted again through the other worker: stored twice, counted once by both.
        assert second.post("/events", json={"events": [{**bought, "user_id": customer}]}, headers=auth).json() \
            == {"accepted": 1, "rejected": []}
        for client in (first, second):
            assert client.get(f"/recommendations/{customer}").json()["history_length"] == length + 1
