"""Batch recommendations and the recommendation service over a promoted champion on a small synthetic shop."""

import duckdb
import numpy as np
import pytest

from orchestration.defs.resources import MLflowResource, WarehouseResource
from orchestration.serving import api
from orchestration.serving.responses import session_json, user_json
from orchestration.serving.service import RecommendationService
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY, pseudonymize
from recmodels.explain import KINDS
from recmodels.sequences import purchased_items


@pytest.fixture(scope="module")
def served(promoted):
    home = promoted.home
    service = RecommendationService.from_champion(WarehouseResource(home=str(home)), MLflowResource(home=str(home)),
                                                  DEV_PSEUDONYMIZATION_KEY)
    return home, promoted.result, service


def _query(home, sql):
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def _raw_customers(home):
    """Shop customer ids as the raw file has them, with their pseudonyms."""
    raw = _query(home, "select distinct customer_id as raw_id from raw.order_lines where customer_id is not null "
                       "and trim(customer_id) <> ''")
    return {pseudonymize(r, DEV_PSEUDONYMIZATION_KEY): r for r in raw["raw_id"]}


def test_batch_recommendations_cover_every_known_customer_with_reasons(served):
    home, result, service = served
    table = _query(home, "select * from ml.user_recommendations order by user_id, rank")
    customers = _query(home, "select distinct user_id from marts.fct_interactions where event_type = 'purchase' "
                             "and user_id is not null")
    assert set(table["user_id"]) == set(customers["user_id"])
    assert all(ranks == [1, 2, 3, 4, 5] for ranks in table.groupby("user_id")["rank"].agg(list))
    assert (table.groupby("user_id")["score"].agg(lambda s: s.is_monotonic_decreasing)).all()
    assert not table.duplicated(["user_id", "item_id"]).any()
    assert set(table["model_version"]) == {1} and set(table["explanation"]) <= set(KINDS)
    # "You bought this before" is true: the item is in that customer's purchases.
    bought = _query(home, "select distinct user_id, item_id from marts.fct_interactions where event_type = 'purchase'")
    pairs = set(zip(bought["user_id"], bought["item_id"]))
    repeat = table[table["explanation"] == "bought_before"]
    assert len(repeat) and all((u, i) in pairs for u, i in zip(repeat["user_id"], repeat["item_id"]))
    # "People who bought X also bought": X is in the customer's purchases too.
    also = table[table["explanation"] == "also_bought"]
    assert len(also) and all((u, x) in pairs for u, x in zip(also["user_id"], also["because_of"]))
    meta = result.asset_materializations_for_node("user_recommendations")[0].metadata
    assert meta["model_version"].value == 1 and meta["customers"].value == len(customers)


def test_service_matches_the_batch_table_for_a_known_customer(served):
    home, _, service = served
    table = _query(home, "select * from ml.user_recommendations order by user_id, rank")
    pseudonym, raw_id = next(iter(sorted(_raw_customers(home).items())))
    answer = service.recommend_user(raw_id, k=5)
    assert answer["known_user"] and answer["strategy"] == "two-stage"
    expected = table[table["user_id"] == pseudonym]
    assert answer["items"]["item_id"].tolist() == expected["item_id"].tolist()
    np.testing.assert_allclose(answer["items"]["score"], expected["score"])
    # Leading spaces and a spreadsheet's ".0" are the same customer, as in the marts.
    assert service.recommend_user(f" {raw_id}.0 ", k=5)["items"]["item_id"].tolist() == expected["item_id"].tolist()

    first = expected.iloc[0]
    why = service.explain(raw_id, first["item_id"])
    assert why["candidate"] and why["rank"] == 1 and why["explanation"] == first["explanation"]
    assert set(why["features"]) == set(service.bundle.recommender.ranker.feature_names)


def test_unknown_customers_get_popular_items_and_sessions_report_unknown_items(served):
    _, _, service = served
    answer = service.recommend_user("no-such-customer", k=3)
    assert not answer["known_user"] and answer["strategy"].startswith("fallback:")
    assert set(answer["items"]["explanation"]) == {"popular_now"} and len(answer["items"]) == 3

    known = [str(i) for i in service.bundle.item_ids[:2]]
    session = service.recommend_session([known[0], "NOT-AN-ITEM", known[1]], k=4)
    assert session["unknown_items"] == ["NOT-AN-ITEM"] and session["strategy"] == "two-stage"
    assert len(session["items"]) == 4
    empty = service.recommend_session(["NOT-AN-ITEM"], k=2)
    assert empty["strategy"].startswith("fallback:") and empty["unknown_items"] == ["NOT-AN-ITEM"]
    with pytest.raises(ValueError, match="k must be between 1 and 100"):
        service.recommend_user("x", k=0)


def test_similar_items_blend_co_purchase_and_text(served):
    _, _, service = served
    item = str(service.bundle.item_ids[0])
    answer = service.similar(item, k=5)
    items = answer["items"]
    assert item not in set(items["item_id"]) and len(items) == 5
    np.testing.assert_allclose(items["score"], (items["co_purchase"] + items["text_cosine"]) / 2)
    assert items["score"].is_monotonic_decreasing
    with pytest.raises(KeyError, match="NOT-AN-ITEM"):
        service.similar("NOT-AN-ITEM")


def test_a_session_gets_none_of_its_own_items_unless_asked_and_never_as_bought_before(served):
    _, _, service = served
    n_items = len(service.bundle.item_ids)
    customer = next(key for key in sorted(set(service.data.histories) & set(service.data.customers))
                    if len(purchased_items(service.data.histories[key], n_items)) >= 3)
    bought = purchased_items(service.data.histories[customer], n_items)  # histories hold views too
    session = [str(i) for i in service.bundle.shop_ids(bought[-3:])]
    default = service.recommend_session(session, k=20)["items"]
    assert len(default) == 20 and not set(default["item_id"]) & set(session)
    assert "bought_before" not in set(default["explanation"])
    with_seen = service.recommend_session(session, k=100, include_seen=True)["items"]
    seen = with_seen[with_seen["item_id"].isin(session)]
    assert len(seen), "a session's own items are among its candidates when asked for"
    assert "bought_before" not in set(seen["explanation"]) and "You bought this before" not in set(seen["reason"])
    # A seen item explained by the rest of the session points at another session item, never itself.
    anchored = seen[seen["because_of"].notna()]
    assert all(a in session and a != i for a, i in zip(anchored["because_of"], anchored["item_id"]))


def test_explain_agrees_with_recommendations_for_known_and_unknown_customers(served):
    home, _, service = served
    for customer in (next(iter(sorted(_raw_customers(home).values()))), "no-such-customer"):
        for row in service.recommend_user(customer, k=10)["items"].to_dict("records"):
            why = service.explain(customer, row["item_id"])
            assert (why["rank"], why["explanation"], why["because_of"], why["reason"], why["title"]) == (
                row["rank"], row["explanation"], row["because_of"], row["reason"], row["title"])
            assert why["score"] == pytest.approx(row["score"]) and why["candidate"]
    unknown = service.explain("no-such-customer", service.recommend_user("no-such-customer", k=2)["items"]
                              ["item_id"].iloc[1])
    assert unknown["rank"] == 2 and unknown["features"] == {} and unknown["known_user"] is False


def test_every_item_has_a_title_or_its_id(served):
    _, _, service = served
    untitled = [str(i) for i in service.bundle.item_ids if service.title(str(i)) is None]
    titled = next(str(i) for i in service.bundle.item_ids if service.title(str(i)) is not None)
    assert service.label(titled) == service.data.catalogue.at[titled, "title"]
    for item in untitled:
        assert service.label(item) == item
    popular = service.popular(k=100)["items"]
    assert popular["title"].notna().all()
    assert all(t == (service.title(i) or i) for i, t in zip(popular["item_id"], popular["title"]))


def test_history_lists_a_customers_latest_purchases_newest_first(served):
    home, _, service = served
    pseudonym, raw_id = next(iter(sorted(_raw_customers(home).items())))
    events = service.data.events.iloc[service.data.event_rows[pseudonym]]
    answer = service.history(raw_id, n=3)
    assert answer["known_user"] and answer["purchases"] == len(events)
    expected = events.iloc[::-1].head(3)
    assert answer["items"]["item_id"].tolist() == [str(i) for i in service.bundle.shop_ids(expected["item"].to_numpy())]
    assert answer["items"]["occurred_at"].is_monotonic_decreasing
    nobody = service.history("no-such-customer")
    assert not nobody["known_user"] and nobody["purchases"] == 0 and nobody["items"].empty


def test_the_routes_fast_json_is_the_schemas_json_for_kept_unknown_and_unranked_customers(served):
    home, _, service = served
    raw_ids = [raw for _, raw in sorted(_raw_customers(home).items())][:3]
    fresh = RecommendationService(service.bundle, service.data, DEV_PSEUDONYMIZATION_KEY, service.version)
    # Nothing kept yet: a lookup gives None for a known customer (rank it off the loop), the fallback for others.
    assert user_json(fresh, 7, raw_ids[0], 5, rank=False) is None
    assert user_json(fresh, 7, "no-such-customer", 5, rank=False) is not None
    for customer in [*raw_ids, "no-such-customer"]:
        for k in (1, 5, 100):
            schema = api.json_response(api.user_response(service.recommend_user(customer, k), 7)).body
            assert user_json(service, 7, customer, k) == schema
            assert user_json(fresh, 7, customer, k) == schema  # ranked now, then kept
            assert user_json(fresh, 7, customer, k, rank=False) == schema


def test_the_session_routes_json_is_the_schemas_json(served):
    home, _, service = served
    items = [str(i) for i in service.bundle.item_ids[:3]]
    customer = sorted(_raw_customers(home).values())[0]
    asked = [(service.recommend_session, (items + ["no-such-item"], 5), {}),
             (service.recommend_session, (["no-such-item"], 3), {}),  # nothing known: the fallback
             (service.recommend_events, ([(items[0], "view", None), (items[1], "cart", None)], 4), {}),
             (service.recommend_events, ([(items[2], "purchase", None)], 100),
              {"include_seen": True, "shop_customer_id": customer})]
    for method, args, options in asked:
        answer = method(*args, **options)
        schema = api.json_response(api.session_response(answer, 3)).body
        assert session_json(service, answer, 3) == schema
        # The route's cheaper path, the items as TOP rows, writes the same bytes.
        assert session_json(service, method(*args, **options, as_rows=True), 3) == schema
