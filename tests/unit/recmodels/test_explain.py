"""Explanations on hand-made data: each rule, its anchor and the order in which rules apply."""

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recmodels.explain import (
    Explainer,
    Explanation,
    behaviour_evidence,
    behaviour_evidence_by_user,
    co_view_similarity,
    sentence,
)
from recmodels.similarity import unit_rows

# Items 1..5. Co-purchase: 1 ~ 3 (0.4), 2 ~ 3 (0.6), 2 ~ 4 (0.2). Text: 5 points like 1; 4 is unlike everything.
CO = sp.csr_matrix(np.array([
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0.4, 0, 0],
    [0, 0, 0, 0.6, 0.2, 0],
    [0, 0.4, 0.6, 0, 0, 0],
    [0, 0, 0.2, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
]))
TEXT = unit_rows(np.array([[0, 0], [1, 0], [0, 1], [1, 1], [-1, -1], [0.9, 0.1]], dtype=np.float32))


def test_each_rule_with_its_anchor():
    explainer = Explainer(co_bought=CO, text_unit=TEXT)
    history = np.array([1, 2, 1])  # oldest first
    got = explainer.explain(history, np.array([2, 3, 5, 4]))
    assert got[0] == Explanation("bought_before", 2, 1.0)
    assert got[1].kind == "also_bought" and got[1].anchor == 2 and np.isclose(got[1].strength, 0.6)  # 0.6 > 0.4
    # Item 5 has no co-purchase with the history; its text is closest to item 1 (cosine 0.994).
    assert got[2].kind == "similar_description" and got[2].anchor == 1 and np.isclose(got[2].strength, 0.9939, atol=1e-4)
    assert got[3] == Explanation("also_bought", 2, got[3].strength) and np.isclose(got[3].strength, 0.2)


def test_popular_now_without_evidence_and_for_an_empty_history():
    explainer = Explainer(co_bought=CO, text_unit=TEXT)
    assert explainer.explain(np.array([1]), np.array([4])) == [Explanation("popular_now", 0, 0.0)]
    assert explainer.explain(np.array([], np.int64), np.array([3])) == [Explanation("popular_now", 0, 0.0)]


def test_ties_go_to_the_most_recent_history_item():
    co = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 0, 0, 0.5], [0, 0, 0, 0.5], [0, 0.5, 0.5, 0]]))
    explainer = Explainer(co_bought=co)
    assert explainer.explain(np.array([1, 2]), np.array([3]))[0].anchor == 2
    assert explainer.explain(np.array([2, 1]), np.array([3]))[0].anchor == 1


def test_sentences_name_the_anchor():
    assert sentence(Explanation("also_bought", 2, 0.6), "Red mug") == "People who bought Red mug also bought this"
    assert sentence(Explanation("similar_description", 1, 0.9), None) == "Similar to an item you bought by description"
    assert sentence(Explanation("popular_now", 0, 0.0), None) == "Popular now"


# Co-view: 3 ~ 5 (0.5), 4 ~ 5 (0.8); 1 ~ 3 (0.9) too, which co-purchase has as well.
CO_VIEW = sp.csr_matrix(np.array([
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0.9, 0, 0],
    [0, 0, 0, 0, 0, 0],
    [0, 0.9, 0, 0, 0, 0.5],
    [0, 0, 0, 0, 0, 0.8],
    [0, 0, 0, 0.5, 0.8, 0],
]))


def test_behaviour_kinds_with_their_anchors_and_order():
    explainer = Explainer(co_bought=CO, co_viewed=CO_VIEW, text_unit=TEXT)
    history = np.array([1, 2])  # bought
    viewed = np.array([4, 3, 4, 2])  # oldest first
    got = explainer.explain(history, np.array([2, 4, 3, 5, 1]), viewed=viewed, in_cart=np.array([2, 1]))
    # In the cart beats bought before (2 was bought and carted since); bought before beats viewed (2 was viewed).
    assert got[0] == Explanation("in_cart", 2, 1.0)
    assert got[1] == Explanation("viewed", 4, 1.0)
    # 3 was viewed, and is also co-bought with 1 and 2: a look at the item itself comes first.
    assert got[2] == Explanation("viewed", 3, 1.0)
    # 5: no co-purchase with 1 or 2; co-viewed with 4 (0.8) and 3 (0.5): the stronger anchor wins.
    assert got[3].kind == "viewed_together" and got[3].anchor == 4 and np.isclose(got[3].strength, 0.8)
    assert got[4] == Explanation("in_cart", 1, 1.0)


def test_also_bought_comes_before_viewed_together_and_ties_go_to_the_most_recent_view():
    explainer = Explainer(co_bought=CO, co_viewed=CO_VIEW, text_unit=TEXT)
    # 3 is co-bought with history item 2 (0.6) and co-viewed with viewed item 1 (0.9): co-buying wins.
    assert explainer.explain(np.array([2]), np.array([3]), viewed=np.array([1]))[0] == Explanation("also_bought", 2, 0.6)
    tie = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 0, 0, 0.5], [0, 0, 0, 0.5], [0, 0.5, 0.5, 0]]))
    only_views = Explainer(co_viewed=tie)
    none = np.array([], np.int64)
    assert only_views.explain(none, np.array([3]), viewed=np.array([1, 2]))[0] == Explanation("viewed_together", 2, 0.5)
    assert only_views.explain(none, np.array([3]), viewed=np.array([2, 1]))[0] == Explanation("viewed_together", 1, 0.5)


def test_bought_narrows_bought_before_and_an_item_is_never_its_own_anchor():
    # An anonymous session looked at 1 and 5 without buying: 5 is explained by 1 (text 0.994), not by itself.
    explainer = Explainer(co_bought=CO, text_unit=TEXT)
    got = explainer.explain(np.array([1, 5]), np.array([5, 1]), bought=np.array([], np.int64))
    assert got[0].kind == "similar_description" and got[0].anchor == 1
    assert got[1].kind == "similar_description" and got[1].anchor == 5
    # With 1 bought in the session, it is bought before; 5, looked at only, still is not.
    got = explainer.explain(np.array([1, 5]), np.array([5, 1]), bought=np.array([1]))
    assert got[0].kind == "similar_description" and got[1] == Explanation("bought_before", 1, 1.0)


def _events(rows, columns=("user_key", "item", "occurred_at", "event_type")):
    frame = pd.DataFrame(rows, columns=list(columns))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"])
    return frame


def test_co_view_similarity_is_item_knn_over_each_customers_views_before_the_cutoff():
    behaviour = _events([
        ("a", 1, "2024-01-01", "view"), ("a", 2, "2024-01-02", "view"),
        ("b", 1, "2024-01-01", "view"), ("b", 2, "2024-01-01", "view"), ("b", 3, "2024-01-03", "view"),
        ("c", 3, "2024-01-02", "view"), ("c", 1, "2024-01-02", "cart"),  # a cart is not a view
        ("c", 4, "2024-02-01", "view"), ("a", 4, "2024-02-01", "view"),  # after the cut-off
    ])
    similarity = co_view_similarity(behaviour, 4, "2024-01-10").toarray()
    # Viewers: 1 {a, b}, 2 {a, b}, 3 {b, c}. cos(1, 2) = 2 / sqrt(2 * 2) = 1; cos(1, 3) = cos(2, 3) = 1 / 2.
    expected = np.zeros((5, 5))
    expected[1, 2] = expected[2, 1] = 1.0
    expected[1, 3] = expected[3, 1] = expected[2, 3] = expected[3, 2] = 0.5
    np.testing.assert_allclose(similarity, expected)
    assert co_view_similarity(behaviour, 4, "2024-01-01") is None  # no view before it


def test_behaviour_evidence_views_and_open_carts():
    behaviour = _events([
        ("a", 7, "2024-01-03", "view"), ("a", 5, "2024-01-01", "view"), ("a", 7, "2024-01-04", "view"),
        ("a", 5, "2024-01-02", "cart"),  # bought on the 3rd: closed
        ("a", 6, "2024-01-05", "cart"),  # bought on the 3rd, carted again after: open
        ("a", 8, "2024-01-05", "cart"),  # never bought: open
        ("a", 9, "2024-01-05", "favourite"),
    ])
    purchases = _events([("a", 5, "2024-01-03", "purchase"), ("a", 6, "2024-01-03", "purchase")])
    viewed, in_cart = behaviour_evidence(behaviour, purchases)
    assert viewed.tolist() == [5, 7, 7] and in_cart.tolist() == [6, 8]
    # Every customer at once: b's cart of 5 is open (a's purchase is not b's); c only bought, so c is left out.
    others = _events([("b", 5, "2024-01-02", "cart"), ("b", 7, "2024-01-01", "view")])
    purchases = pd.concat([purchases, _events([("c", 5, "2024-01-03", "purchase")])])
    by_user = behaviour_evidence_by_user(pd.concat([behaviour, others]), purchases)
    assert {key: (v.tolist(), c.tolist()) for key, (v, c) in by_user.items()} == {
        "a": ([5, 7, 7], [6, 8]), "b": ([7], [5])}
    assert [a.tolist() for a in behaviour_evidence(behaviour.iloc[:0], purchases)] == [[], []]


def test_sentences_of_the_behaviour_kinds():
    assert sentence(Explanation("in_cart", 3, 1.0), "Red mug") == "In your cart"
    assert sentence(Explanation("viewed", 3, 1.0), "Red mug") == "You viewed this"
    assert sentence(Explanation("viewed_together", 2, 0.8), "Red mug") == "Viewed together with Red mug"
    assert sentence(Explanation("viewed_together", 2, 0.8), None) == "Viewed together with an item you viewed"


def test_one_customers_evidence_as_arrays_equals_the_group_by_over_everyone():
    rng = np.random.default_rng(2)
    for trial in range(40):
        n, m = int(rng.integers(0, 12)), int(rng.integers(0, 6))
        times = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 5, n + m), unit="D")
        times = times.to_numpy().copy()
        times[rng.random(n + m) < 0.15] = np.datetime64("NaT")  # a missing time is neither latest nor compared
        behaviour = pd.DataFrame({"user_key": "a", "item": rng.integers(1, 5, n),
                                  "occurred_at": times[:n], "event_type": rng.choice(["view", "cart", "favourite"], n),
                                  "quantity": 1.0})
        purchases = pd.DataFrame({"user_key": "a", "item": rng.integers(1, 5, m), "occurred_at": times[n:]})
        viewed, in_cart = behaviour_evidence(behaviour, purchases)
        expected = behaviour_evidence_by_user(behaviour, purchases).get("a", (np.array([], np.int64),) * 2)
        assert (viewed.tolist(), in_cart.tolist()) == (expected[0].tolist(), expected[1].tolist()), trial


def test_similarities_read_from_the_sparse_arrays_equal_the_sliced_matrix():
    from recmodels.explain import _gathered

    rng = np.random.default_rng(3)
    for trial in range(50):
        n = int(rng.integers(1, 30))
        matrix = sp.random(n + 1, n + 1, density=float(rng.random()), format="csr", random_state=trial)
        anchors = rng.integers(0, n + 1, size=int(rng.integers(1, 6)))
        items = rng.integers(0, n + 1, size=int(rng.integers(1, 9)))  # repeats too
        np.testing.assert_array_equal(_gathered(matrix, anchors, items), matrix[anchors][:, items].toarray())
