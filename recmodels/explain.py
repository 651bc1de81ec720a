"""Why an item is recommended, in terms a shopper understands, from the evidence the models themselves use.

For each recommended item the first rule that holds wins, strongest evidence first:

1. ``in_cart``: the customer put the item in the cart and has not bought it since (the anchor is the item itself).
   First, even before a purchase, because it is the customer's latest word on this very item: an open cart says
   "I mean to buy this now", and a cart newer than a purchase is a new intent, not the old purchase;
2. ``bought_before``: the item is among the customer's purchases (the anchor is the item itself). A purchase is
   stronger evidence of interest than a look;
3. ``viewed``: the customer viewed the item (the anchor is the item itself). Weaker than a purchase or a cart (most
   views lead nowhere) but still about the item itself, so it comes before every rule about a related item;
4. ``also_bought``: customers who bought a history item also bought this one; the anchor is the history item
   with the largest co-purchase similarity (``ItemKNN.similarity_``), the most recent on ties;
5. ``viewed_together``: customers who viewed an item the customer viewed also viewed this one; the anchor is the
   viewed item with the largest co-view similarity (``co_view_similarity``), the most recent on ties. After
   ``also_bought``: views are many and cheap, so co-viewing says less than co-buying;
6. ``similar_description``: a history item's text embedding is close (cosine >= ``min_text_cosine``); the
   anchor is the closest. Last of the evidence rules: it is what the catalogue says, not what anybody did;
7. ``popular_now``: none of the above: the item is there for its popularity.

An item is never its own anchor: a related-item rule looks at the other items only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recmodels.baselines import ItemKNN
from recmodels.sequences import PAD

KINDS = ("in_cart", "bought_before", "viewed", "also_bought", "viewed_together", "similar_description", "popular_now")


@dataclass(frozen=True)
class Explanation:
    kind: str  # one of KINDS
    anchor: int  # internal id of the customer's item behind it (the item itself for the first three); PAD for popular_now
    strength: float  # the similarity behind the related-item rules; 1 for the first three, 0 for popular_now


def _recent_first(items: np.ndarray | None) -> np.ndarray:
    """Distinct items of ``items`` (oldest first), most recent first, so argmax ties go to the most recent."""
    if items is None:
        return np.array([], np.int64)
    items = np.asarray(items, dtype=np.int64)
    recent_first = items[items != PAD][::-1]
    _, first = np.unique(recent_first, return_index=True)
    return recent_first[np.sort(first)]


def _similarities(matrix: sp.csr_matrix | None, anchors: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    """(anchors, items) similarities from an item-to-item matrix, an item's similarity to itself set to 0."""
    if matrix is None or not len(anchors) or not len(items):
        return None
    if sp.isspmatrix_csr(matrix) and matrix.has_canonical_format:
        values = _gathered(matrix, anchors, items)
    else:
        values = np.asarray(matrix[anchors][:, items].toarray(), dtype=np.float64)  # (H, I)
    values[anchors[:, None] == items[None, :]] = 0.0
    return values


def _gathered(matrix: sp.csr_matrix, anchors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``matrix[anchors][:, items]`` as a dense (H, I) float64 array, read straight from a canonical CSR matrix's
    arrays: a few anchors' rows cost far less so than through two sparse slicings."""
    distinct, column = np.unique(items, return_inverse=True)
    starts, lengths = matrix.indptr[anchors], np.diff(matrix.indptr)[anchors]
    rows = np.repeat(np.arange(len(anchors)), lengths)
    at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())  # the rows' entries
    found = np.searchsorted(distinct, matrix.indices[at])
    found = np.minimum(found, len(distinct) - 1)
    hit = distinct[found] == matrix.indices[at]
    values = np.zeros((len(anchors), len(distinct)))
    values[rows[hit], found[hit]] = matrix.data[at][hit]
    return values[:, column.ravel()]


@dataclass(frozen=True)
class Explainer:
    co_bought: sp.csr_matrix | None = None  # (n+1, n+1) item-to-item co-purchase similarity
    co_viewed: sp.csr_matrix | None = None  # (n+1, n+1) item-to-item co-view similarity (co_view_similarity)
    text_unit: np.ndarray | None = None  # (n+1, d) L2-normalised text vectors, zero rows without text
    min_text_cosine: float = 0.5  # below this, descriptions are not "similar" enough to say so

    def explain(self, history: np.ndarray, items: np.ndarray, viewed: np.ndarray | None = None,
                in_cart: np.ndarray | None = None, bought: np.ndarray | None = None) -> list[Explanation]:
        """One explanation per item of ``items`` for a customer with ``history`` (internal ids, oldest first: the
        anchors of also_bought and similar_description), who viewed ``viewed`` (oldest first: the anchors of
        viewed_together) and has ``in_cart`` in the cart. ``bought``: the items that were bought, when not every
        history item was (an anonymous session's items may only have been looked at); default ``history``."""
        kinds, anchors, strengths = self.explain_arrays(history, items, viewed, in_cart, bought)
        return [Explanation(KINDS[kind], anchor, strength)
                for kind, anchor, strength in zip(kinds.tolist(), anchors.tolist(), strengths.tolist())]

    def explain_arrays(self, history: np.ndarray, items: np.ndarray, viewed: np.ndarray | None = None,
                       in_cart: np.ndarray | None = None, bought: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``explain`` as arrays, one entry per item: its rule (index in ``KINDS``), anchor and strength. Each rule
        is tested on every item at once, and an item keeps the first that holds."""
        anchors = _recent_first(history)
        seen = _recent_first(viewed)
        items = np.asarray(items, dtype=np.int64)
        owned = anchors if bought is None else _recent_first(bought)
        kind = np.full(len(items), KINDS.index("popular_now"), np.int64)
        anchor = np.full(len(items), PAD, np.int64)
        strength = np.zeros(len(items))
        open_ = np.ones(len(items), dtype=bool)  # no rule has held yet

        def holds(rule: str, where: np.ndarray, anchor_of: np.ndarray, strength_of: np.ndarray | float) -> None:
            chosen = open_ & where
            kind[chosen], anchor[chosen] = KINDS.index(rule), anchor_of[chosen]
            strength[chosen] = strength_of[chosen] if isinstance(strength_of, np.ndarray) else strength_of
            open_[chosen] = False

        holds("in_cart", np.isin(items, _recent_first(in_cart)), items, 1.0)
        holds("bought_before", np.isin(items, owned), items, 1.0)
        holds("viewed", np.isin(items, seen), items, 1.0)
        columns = np.arange(len(items))
        for rule, matrix, among, least in (("also_bought", self.co_bought, anchors, None),
                                           ("viewed_together", self.co_viewed, seen, None),
                                           ("similar_description", None, anchors, self.min_text_cosine)):
            # Every item's similarities, decided or not: a product over only some items would sum in another order
            # and move the strengths in their last bits.
            if least is None:
                values = _similarities(matrix, among, items)
            elif self.text_unit is not None and len(anchors) and len(items):
                values = self.text_unit[anchors] @ self.text_unit[items].T  # (H, I)
                values[anchors[:, None] == items[None, :]] = -np.inf
            else:
                values = None
            if values is not None:
                best = np.argmax(values, axis=0)  # the first of equals: the most recent anchor
                top = values[best, columns]
                holds(rule, top > 0 if least is None else top >= least, among[best], top.astype(np.float64))
        return kind, anchor, strength


def co_view_similarity(behaviour: pd.DataFrame, n_items: int, cutoff) -> sp.csr_matrix | None:
    """(n+1, n+1) item-to-item co-view similarity: item-kNN's cosine (``ItemKNN``, as the co-purchase one) over
    each customer's views before ``cutoff``, a customer's views being one sequence. ``behaviour`` is a
    ``behaviour_events`` frame; None when no view precedes ``cutoff``."""
    times = behaviour["occurred_at"].to_numpy().astype("datetime64[ns]")
    views = behaviour[(behaviour["event_type"].to_numpy() == "view")
                      & (times < np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns"))]
    if views.empty:
        return None
    views = views.sort_values(["user_key", "occurred_at", "item"], kind="stable")
    sequences = [group.to_numpy(np.int64) for _, group in views.groupby("user_key", sort=True)["item"]]
    return ItemKNN().fit(sequences, n_items).similarity_


def behaviour_evidence_by_user(behaviour: pd.DataFrame, purchases: pd.DataFrame
                               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """User key -> (viewed, in_cart) from ``behaviour_events`` and ``purchase_events`` frames, in one pass over
    every customer: the items viewed, oldest first, and the items whose last cart is later than their last purchase
    (or never bought), the rule of the ranker's ``user_item_carted_not_bought``. Users without views or carts are
    left out."""
    kind = behaviour["event_type"].to_numpy()
    views = behaviour[kind == "view"].sort_values(["user_key", "occurred_at"], kind="stable")
    carts = behaviour[kind == "cart"].groupby(["user_key", "item"])["occurred_at"].max()
    last_bought = purchases.groupby(["user_key", "item"])["occurred_at"].max().reindex(carts.index)
    open_cart = carts[last_bought.isna().to_numpy() | (carts.to_numpy() > last_bought.to_numpy())]
    empty = np.array([], np.int64)
    viewed = {key: rows.to_numpy(np.int64) for key, rows in views.groupby("user_key", sort=False)["item"]}
    carted = {key: rows.index.get_level_values("item").to_numpy(np.int64)
              for key, rows in open_cart.groupby(level="user_key", sort=False)}
    return {key: (viewed.get(key, empty), carted.get(key, empty)) for key in viewed.keys() | carted.keys()}


def behaviour_evidence(behaviour: pd.DataFrame, purchases: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(viewed, in_cart) of one customer from their ``behaviour_events`` and ``purchase_events`` rows (frames or
    ``EventTable``s), as ``behaviour_evidence_by_user`` gives them."""
    return evidence_of(np.asarray(behaviour["item"], np.int64), np.asarray(behaviour["event_type"]),
                       np.asarray(behaviour["occurred_at"], "datetime64[ns]"),
                       np.asarray(purchases["item"], np.int64), np.asarray(purchases["occurred_at"], "datetime64[ns]"))


def evidence_of(items: np.ndarray, event_types: np.ndarray, times: np.ndarray, bought: np.ndarray,
                bought_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``behaviour_evidence`` of one customer's events as arrays: their behaviour (items, event types, times) and
    purchases (items, times). A customer's few events cost less as arrays than a pandas group-by costs at all."""
    views = event_types == "view"
    viewed = items[views][np.argsort(times[views], kind="stable")]  # oldest first; NaT last, as pandas sorts
    carts = event_types == "cart"
    carted = np.unique(items[carts])
    last_cart, last_bought = _last_times(items[carts], times[carts], carted), _last_times(bought, bought_at, carted)
    # Never bought, or carted again after the last purchase; a comparison with a missing time is false, as in pandas.
    return viewed, carted[np.isnat(last_bought) | (last_cart > last_bought)]


def _last_times(items: np.ndarray, times: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The latest time of each of ``wanted`` (sorted ids) among (items, times), missing times skipped; NaT for an
    item without one: a group-by's max."""
    last = np.full(len(wanted), np.datetime64("NaT"), "datetime64[ns]")
    known = ~np.isnat(times)
    items, times = items[known], times[known]
    if not len(items) or not len(wanted):
        return last
    order = np.lexsort((times, items))
    items, times = items[order], times[order]
    final = np.r_[items[1:] != items[:-1], True]  # each item's latest time ends its run
    items, times = items[final], times[final]
    at = np.minimum(np.searchsorted(wanted, items), len(wanted) - 1)
    hit = wanted[at] == items
    last[at[hit]] = times[hit]
    return last


def sentence(explanation: Explanation, anchor_title: str | None) -> str:
    """The explanation as a short sentence; ``anchor_title`` names the anchor item."""
    kind = explanation.kind
    if kind == "in_cart":
        return "In your cart"
    if kind == "bought_before":
        return "You bought this before"
    if kind == "viewed":
        return "You viewed this"
    if kind == "also_bought":
        return f"People who bought {anchor_title or 'an item you bought'} also bought this"
    if kind == "viewed_together":
        return f"Viewed together with {anchor_title or 'an item you viewed'}"
    if kind == "similar_description":
        return f"Similar to {anchor_title or 'an item you bought'} by description"
    return "Popular now"
