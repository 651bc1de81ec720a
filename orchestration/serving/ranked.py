"""Answers the pipeline ranked, kept in the warehouse so that a server loading the same bundle over the same marts
reads them instead of ranking every customer again.

The batch step (``user_recommendations``) ranks every known customer with the champion anyway. Ranking them again
in the server costs about a minute of CPU on Online Retail at every start and every swap, and under load that minute
competes with the requests for the cores. A customer's answer is a pure function of the bundle's files and the
marts' content (the features are computed as of the newest event), so the rows are kept with the bundle's content
digest and the marts' fingerprint, and used only where both match; any other server ranks as before.

The promotion gate ranks a bundle it promotes (``rank_ahead``) before it moves the alias, so a server that sees the
new champion finds its answers ready; ``user_recommendations`` then reads them for its table.
"""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pandas as pd

from orchestration.serving.answers import TOP

logger = logging.getLogger(__name__)

RANKED_TABLE = "ml.ranked_answers"
_FIELDS = list(TOP.names)  # item, score, kind, anchor, strength


def ranked_frame(answers: list[tuple[str, np.ndarray]], bundle_digest: str, data_version: str) -> pd.DataFrame:
    """Kept answers (user key, ``TOP`` rows) as the table's rows, one per recommended item, best first."""
    lengths = np.array([len(top) for _, top in answers], dtype=np.int64)
    rows = np.concatenate([top for _, top in answers]) if answers else np.zeros(0, TOP)
    frame = pd.DataFrame({
        "bundle_digest": bundle_digest, "data_version": data_version,
        "user_id": np.repeat(np.array([key for key, _ in answers], dtype=object), lengths),
        "position": np.concatenate([np.arange(n) for n in lengths]).astype(np.int16) if answers else np.zeros(0, np.int16),
    })
    for name in _FIELDS:
        frame[name] = rows[name]
    return frame


def write_ranked(warehouse, service) -> int:
    """Replace the table with the answers ``service`` keeps; returns how many customers it holds. Nothing is kept for
    marts without a fingerprint: no server could tell they are the same."""
    answers = sorted(service.answers.items())
    if service.data.version is None:
        answers = []
    frame = ranked_frame(answers, service.bundle.digest, service.data.version or "")
    warehouse.write_table(RANKED_TABLE, frame)
    return len(answers)


def read_ranked(con: duckdb.DuckDBPyConnection, bundle_digest: str, data_version: str | None) -> dict[str, np.ndarray]:
    """The kept answers for this bundle over these marts, by user key; empty when the table holds others."""
    if data_version is None:
        return {}
    fields = ", ".join(_FIELDS)
    try:
        columns = con.execute(f"select user_id, {fields} from {RANKED_TABLE} where bundle_digest = ? and "
                              "data_version = ? order by user_id, position", [bundle_digest, data_version]).fetchnumpy()
    except duckdb.CatalogException:  # never written: a pipeline from before this table, or no batch step yet
        return {}
    users = np.asarray(columns["user_id"], dtype=object)
    if len(users) == 0:
        return {}
    rows = np.empty(len(users), TOP)
    for name in _FIELDS:
        rows[name] = np.asarray(columns[name])
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    return {str(users[start]): rows[start:end].copy() for start, end in zip(starts, ends)}


def reuse_ranked(service, warehouse) -> int:
    """Keep, in ``service``, the answers the pipeline ranked for its bundle over its marts, for the customers it
    would rank; returns how many. Anything unreadable is no error: the service ranks those customers itself."""
    try:
        with warehouse.connect(read_only=True) as con:
            ranked = read_ranked(con, service.bundle.digest, service.data.version)
    except duckdb.Error as error:
        logger.warning("Not reading the answers ranked by the pipeline (%s): ranking every customer here", error)
        return 0
    kept = 0
    for key in service.data.customers:
        top = ranked.get(key)
        if top is not None and service.data.histories.get(key) is not None:
            service.answers.keep(key, top, 0)  # ranked over the marts: before any event recorded here
            kept += 1
    return kept


def rank_ahead(client, version: int, warehouse, pseudonymization_key: str) -> int | None:
    """Rank every known customer with registered ``version`` over the marts as they are now and keep the answers in
    the table; returns how many customers. Run before the alias moves to ``version``. None where ranking failed,
    which holds no promotion back: a server then ranks the customers itself."""
    from orchestration.serving.batching import single_threaded
    from orchestration.serving.service import RecommendationService

    try:
        service = RecommendationService.from_registry(client, version, warehouse, pseudonymization_key)
        with single_threaded():  # the arithmetic of the batch table and of the API
            service.warm()
        return write_ranked(warehouse, service)
    except Exception:
        logger.warning("Version %s is promoted without answers ranked ahead", version, exc_info=True)
        return None
