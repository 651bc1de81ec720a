"""Why an item is recommended, in terms a shopper understands, from the evidence the models themselves use.

For each recommended item the first rule that holds wins, strongest evidence first:

1. ``bought_before``: the item is in the customer's own history (the anchor is the item itself);
2. ``also_bought``: customers who bought a history item also bought this one; the anchor is the history item
   with the largest co-purchase similarity (``ItemKNN.similarity_``), the most recent on ties;
3. ``similar_description``: a history item's text embedding is close (cosine >= ``min_text_cosine``); the
   anchor is the closest;
4. ``popular_now``: none of the above: the item is there for its popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recmodels.sequences import PAD

KINDS = ("bought_before", "also_bought", "similar_description", "popular_now")


@dataclass(frozen=True)
class Explanation:
    kind: str  # one of KINDS
    anchor: int  # internal id of the history item behind it; PAD (0) for popular_now
    strength: float  # the similarity behind also_bought / similar_description; 1 for bought_before, 0 popular


@dataclass(frozen=True)
class Explainer:
    co_bought: sp.csr_matrix | None = None  # (n+1, n+1) item-to-item co-purchase similarity
    text_unit: np.ndarray | None = None  # (n+1, d) L2-normalised text vectors, zero rows without text
    min_text_cosine: float = 0.5  # below this, descriptions are not "similar" enough to say so

    def explain(self, history: np.ndarray, items: np.ndarray) -> list[Explanation]:
        """One explanation per item of ``items`` for a customer with ``history`` (internal ids, oldest first)."""
        history = np.asarray(history, dtype=np.int64)
        history = history[history != PAD]
        # Distinct history items, most recent first, so argmax ties go to the most recent purchase.
        recent_first = history[::-1]
        _, first = np.unique(recent_first, return_index=True)
        anchors = recent_first[np.sort(first)]
        items = np.asarray(items, dtype=np.int64)
        owned = set(anchors.tolist())
        co = text = None
        if len(anchors) and len(items):
            if self.co_bought is not None:
                co = self.co_bought[anchors][:, items].toarray()  # (H, I)
            if self.text_unit is not None:
                text = self.text_unit[anchors] @ self.text_unit[items].T  # (H, I)
        out = []
        for column, item in enumerate(items.tolist()):
            if item in owned:
                out.append(Explanation("bought_before", item, 1.0))
                continue
            if co is not None and co[:, column].max() > 0:
                best = int(np.argmax(co[:, column]))
                out.append(Explanation("also_bought", int(anchors[best]), float(co[best, column])))
                continue
            if text is not None and text[:, column].max() >= self.min_text_cosine:
                best = int(np.argmax(text[:, column]))
                out.append(Explanation("similar_description", int(anchors[best]), float(text[best, column])))
                continue
            out.append(Explanation("popular_now", PAD, 0.0))
        return out


def sentence(explanation: Explanation, anchor_title: str | None) -> str:
    """The explanation as a short sentence; ``anchor_title`` names the anchor item."""
    name = anchor_title or "an item you bought"
    if explanation.kind == "bought_before":
        return "You bought this before"
    if explanation.kind == "also_bought":
        return f"People who bought {name} also bought this"
    if explanation.kind == "similar_description":
        return f"Similar to {name} by description"
    return "Popular now"
