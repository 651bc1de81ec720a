"""Explanations on hand-made data: each rule, its anchor and the order in which rules apply."""

import numpy as np
import scipy.sparse as sp

from recmodels.explain import Explainer, Explanation, sentence
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
