"""Answers kept per customer, compactly, and described for a response only when asked for.

A kept answer is a customer's top ``MAX_K`` as ``TOP`` rows (internal ids, scores, the explanation as codes): about
2 KB a customer, where the described frame would be tens. Titles and sentences are made for the ``k`` rows a
request asks for.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from orchestration.registry.bundle import Bundle
from recmodels.explain import KINDS, Explainer, Explanation, sentence
from recmodels.sequences import purchased_items

# One recommended item: internal id, score, explanation (index into KINDS), its anchor (internal id, PAD for none)
# and strength.
TOP = np.dtype([("item", np.int32), ("score", np.float64), ("kind", np.int8), ("anchor", np.int32),
                ("strength", np.float32)])
COLUMNS = ["rank", "item_id", "title", "score", "explanation", "because_of", "reason"]


class Answers:
    """Kept top lists by user key, with a generation per key: an answer ranked before the key's latest events is
    not kept (``drop`` moves the generation on, ``keep`` checks it). Also the catalogue's labels."""

    def __init__(self, bundle: Bundle, catalogue: pd.DataFrame):
        self.bundle = bundle
        self.catalogue = catalogue
        titles = catalogue["title"]
        self._titles = {str(item): str(title) for item, title in titles.items() if not pd.isna(title)}
        # Labels by internal id, so a response labels its items with one gather.
        self._labels = np.array([None, *(self._titles.get(str(i), str(i)) for i in bundle.item_ids)], dtype=object)
        self._kept: dict[str, np.ndarray] = {}
        self._generations: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def nbytes(self) -> int:
        """The kept answers' arrays, in bytes."""
        return sum(top.nbytes for top in list(self._kept.values()))

    def get(self, key: str) -> np.ndarray | None:
        return self._kept.get(key)

    def items(self) -> list[tuple[str, np.ndarray]]:
        """The kept answers by user key, as of now."""
        return list(self._kept.items())

    def generation(self, key: str) -> int:
        return self._generations.get(key, 0)

    def keep(self, key: str, top: np.ndarray, generation: int) -> None:
        """Keep ``top``, ranked at ``generation`` of the key, unless events were recorded since."""
        with self._lock:
            if self._generations.get(key, 0) == generation:
                self._kept[key] = top

    def drop(self, key: str) -> None:
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            self._kept.pop(key, None)

    def title(self, item_id: str | None) -> str | None:
        """The catalogue's title, or None when the catalogue has none."""
        return None if item_id is None else self._titles.get(str(item_id))

    def label(self, item_id: str | None) -> str | None:
        """What a shopper is shown for an item: its title, or its id when the catalogue has no title."""
        return None if item_id is None else self.title(item_id) or str(item_id)

    def labels(self, internal: np.ndarray) -> np.ndarray:
        return self._labels[np.asarray(internal, dtype=np.int64)]


def explained(explainer: Explainer, bundle: Bundle, history: np.ndarray, items: np.ndarray, scores: np.ndarray,
              k: int, evidence: dict[str, np.ndarray]) -> np.ndarray:
    """The first ``k`` of ``items`` (best first) with their ``scores`` as ``TOP`` rows, explained for a customer
    with ``history`` and ``evidence`` (``Explainer.explain``'s viewed, in_cart, bought)."""
    items, scores = np.asarray(items, np.int64)[:k], np.asarray(scores, np.float64)[:k]
    # Co-purchase evidence reads the purchases of a history that may hold views (tokens) too.
    kinds, anchors, strengths = explainer.explain_arrays(purchased_items(history, len(bundle.item_ids)), items,
                                                         **evidence)
    rows = np.empty(len(items), dtype=TOP)
    rows["item"], rows["score"], rows["kind"], rows["anchor"], rows["strength"] = items, scores, kinds, anchors, \
        strengths
    return rows


def described(answers: Answers, top: np.ndarray) -> pd.DataFrame:
    """``TOP`` rows as an answer's items: rank, item_id, title, score, explanation, because_of, reason."""
    anchors = top["anchor"].astype(np.int64)
    anchor_ids = answers.bundle.shop_ids(anchors)
    anchor_labels = answers.labels(anchors)
    kinds = [KINDS[code] for code in top["kind"]]
    return pd.DataFrame({
        "rank": np.arange(1, len(top) + 1), "item_id": answers.bundle.shop_ids(top["item"]),
        "title": answers.labels(top["item"]), "score": top["score"].astype(np.float64), "explanation": kinds,
        "because_of": anchor_ids,
        "reason": [sentence(Explanation(kind, int(anchor), float(strength)), label)
                   for kind, anchor, strength, label in zip(kinds, anchors, top["strength"], anchor_labels)],
    }, columns=COLUMNS)


def popular_top(bundle: Bundle, fallback: str | None, explainer: Explainer, k: int) -> np.ndarray:
    """The fallback model's items, best first, as ``TOP`` rows (every one "popular now"); none without one."""
    if fallback is None:
        return np.empty(0, dtype=TOP)
    scores = bundle.models[fallback].score([np.array([], np.int64)])[0]
    order = np.argsort(-scores[1:], kind="stable")[:k] + 1
    return explained(explainer, bundle, np.array([], np.int64), order, scores[order], k, {})
