"""The champion being served: the registry's champion version and the service built from it, reloaded when the
``champion`` alias moves or the marts change, and swapped in whole so that a request sees one model and one data
from start to end.
"""

import gc
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb
import pandas as pd

from orchestration.ingest.event_rules import Event
from orchestration.registry.bundle import Bundle, load_bundle, registered_bundle
from orchestration.registry.promotion import (
    BUNDLE_MODEL,
    CHAMPION_ALIAS,
    HISTORY_TAG,
    PROMOTION_LOG,
    PROMOTION_REASONS_TAG,
    current_champion,
)
from orchestration.serving.ranked import reuse_ranked
from orchestration.serving.service import RecommendationService
from orchestration.serving.shop import ShopData, marts_version
from orchestration.serving.warming import APART_MIN_CUSTOMERS, WarmingFailed, build_apart
from orchestration.store.warehouse import WarehouseBusyError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One champion version and the service built from it; replaced whole, never edited."""

    service: RecommendationService
    champion: dict[str, Any]  # current_champion()'s description of the version

    @property
    def version(self) -> int:
        return int(self.champion["version"])


class ChampionHolder:
    """The current ``Served``, reloaded when the registry's champion alias moves or the marts change.

    A service is ranked for every known customer (``RecommendationService.warm``) before it is swapped in, so a
    request for a known customer is a lookup from the first answer on; a replacement is built and warmed (in a
    child process, where the shop is worth it) while the old one keeps answering, and takes over the events the old
    one recorded that its data does not hold."""

    def __init__(self, warehouse, mlflow, pseudonymization_key: str, reload_seconds: float):
        self.warehouse = warehouse
        self.key = pseudonymization_key
        self.reload_seconds = max(float(reload_seconds), 0.0)
        self.client = mlflow.client()  # one client: MLflowTracking.client() re-sets MLflow's global tracking URI
        self.current: Served | None = None
        self.problem: str | None = None  # why the last check loaded nothing (no champion, a failed load)
        self.last_swapped = False  # whether the last check_now() swapped in a new service
        self._checking = threading.Lock()  # held while a check runs; a second one is skipped, not queued
        self._swapping = threading.Lock()  # held while events are recorded or the current service replaced
        self._last_check = time.monotonic()  # the caller's first refresh() counts as the first check
        self._thread: threading.Thread | None = None
        self._incoming: RecommendationService | None = None  # being warmed, to stop at shutdown
        self._closing = threading.Event()  # set at shutdown: a warming child is stopped
        self._checked_at: tuple | None = None  # the warehouse's change token when its marts were last hashed

    def refresh(self) -> bool:
        """Check the registry and the marts once; load and swap in a new champion version, or the same version
        over new data. True when it swapped. Never raises: a failure is logged and the current model keeps
        serving."""
        current = self.current
        try:
            champion = current_champion(self.client)
            if champion is None:
                self.problem = (f"{BUNDLE_MODEL} has no {CHAMPION_ALIAS} yet: "
                                "run the retrain job (promotion_decision).")
                if current is not None:
                    logger.warning("%s has no %s alias any more; still serving version %d",
                                   BUNDLE_MODEL, CHAMPION_ALIAS, current.version)
                return False
            if current is not None and int(champion["version"]) == current.version:
                return self._refresh_data(current)
            started = time.perf_counter()
            if current is None:
                freeze_loaded()
            version = int(champion["version"])
            service, apart = self._build(load_bundle(registered_bundle(self.client, version, self.warehouse.paths)),
                                         version, current)
            champion = {**champion, **promotion_record(self.client, champion, self.warehouse)}
            self._install(Served(service, champion), current, warm=not apart)
        except Exception as error:  # any failure: keep serving what we have
            self.problem = f"loading the {CHAMPION_ALIAS} of {BUNDLE_MODEL} failed: {error}"
            logger.exception("Loading the %s of %s failed; %s", CHAMPION_ALIAS, BUNDLE_MODEL,
                             f"still serving version {current.version}" if current else "nothing to serve")
            return False
        self.problem = None
        logger.info("Serving %s version %d (%.1f s to load)", BUNDLE_MODEL, self.current.version,
                    time.perf_counter() - started)
        return True

    def _refresh_data(self, current: Served) -> bool:
        """Reload the shop's data under the same champion when the marts' fingerprint has changed. A run writing
        the warehouse just now is no failure: the next check will see what it wrote. A file not written since the
        last check is not read again: hashing the marts costs a scan of every table (a tenth of a second on Online
        Retail, seconds at ten million events), every ``reload_seconds``, on the cores that answer requests."""
        token = self.warehouse.change_token()
        if token is not None and token == self._checked_at:
            return False
        try:
            with self.warehouse.connect(read_only=True, wait=False) as con:
                version = marts_version(con)
        except WarehouseBusyError as busy:
            logger.debug("Not checking for new data now: %s", busy)
            return False
        self._checked_at = token  # taken before the read: a write during it changes the next token
        if version == current.service.data.version:
            return False
        started = time.perf_counter()
        service = current.service
        incoming, apart = self._build(service.bundle, service.version, current)
        self._install(Served(incoming, current.champion), current, warm=not apart)
        logger.info("Serving %s version %d over new data (marts %s, %.1f s to load)", BUNDLE_MODEL,
                    current.version, self.current.service.data.version, time.perf_counter() - started)
        return True

    def _build(self, bundle: Bundle, version: int | None, current: Served | None
               ) -> tuple[RecommendationService, bool]:
        """The service of ``bundle`` over the marts as they are now, and whether it was built apart. A replacement
        in a shop worth it is built and ranked in a child process, the current one answering meanwhile with this
        process's interpreter to itself; a first one, a small shop's or one the child failed to build is built
        here."""
        if current is not None and len(current.service.data.customers) >= APART_MIN_CUSTOMERS:
            try:
                service = build_apart(bundle, self.warehouse.paths.home, self.key, version, self._closing)
                # The child compiled the ranker and kept the machine code: this reads it, in milliseconds.
                bundle.compile_ranker(self.warehouse.paths)
                logger.info("Adopted a service and %d answers built in a child process", len(service.answers))
                return service, True
            except WarmingFailed as failed:
                if self._closing.is_set():
                    raise
                logger.warning("Building in a child process gave nothing (%s); building here", failed)
        bundle.compile_ranker(self.warehouse.paths)
        service = RecommendationService(bundle, ShopData.read(self.warehouse, bundle), self.key, version)
        reused = reuse_ranked(service, self.warehouse)
        if reused:
            logger.info("Read %d answers the pipeline ranked for this bundle over these marts", reused)
        return service, False

    def _install(self, served: Served, current: Served | None, warm: bool = True) -> None:
        """Make ``served`` current, warmed first unless a child ranked it, with the events ``current`` recorded
        meanwhile carried over under the lock that recording takes, so none is lost between the two."""
        incoming = self._incoming = served.service
        following = incoming.carry_over(current.service) if current is not None else 0
        try:
            # Not after a child: whoever it left unranked has events recorded meanwhile, and is ranked when next
            # asked for, as after any event. Ranking them all here held the interpreter for seconds (hundreds of
            # customers, the whole swap's worth of events) while requests waited: the swap's slowest answers.
            if warm:
                incoming.warm()
        finally:
            self._incoming = None
        with self._swapping:
            if current is not None:
                incoming.carry_over(current.service, since=following)
            self.current = served  # one reference assignment: requests see old or new, never a mix
        if current is not None:
            current.service.close()

    def record_events(self, events: pd.DataFrame | Sequence[Event]) -> int:
        """``RecommendationService.record_events`` on the current service (a frame of ``live.RECORDED_COLUMNS``,
        or the API's checked events), never lost to a reload swapping it out meanwhile; 0 without a champion."""
        with self._swapping:
            served = self.current
            return 0 if served is None else served.service.record_events(events)

    def maybe_refresh(self) -> None:
        """Start a background check when the last one began ``reload_seconds`` ago or more and none is running."""
        now = time.monotonic()
        if now - self._last_check < self.reload_seconds or not self._checking.acquire(blocking=False):
            return
        self._last_check = now

        def check() -> None:
            try:
                if self.refresh():
                    collect_replaced()
            finally:
                self._checking.release()

        thread = threading.Thread(target=check, name="champion-reload", daemon=True)
        thread.start()
        self._thread = thread  # only once started: ``wait`` in another thread may join it at once

    def check_now(self, timeout: float) -> bool:
        """Check at once (an admin's reload): wait up to ``timeout`` s for a check already running, then run one
        here. False when the running one did not finish in time; ``last_swapped`` tells whether this one swapped."""
        if not self._checking.acquire(timeout=timeout):
            return False
        try:
            self._last_check = time.monotonic()
            self.last_swapped = self.refresh()
            if self.last_swapped:
                collect_replaced()
        finally:
            self._checking.release()
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a running check to finish (shutdown, tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop a replacement's warm-up and wait for the running check (shutdown); the frozen objects go back to
        the collector, so the process ends with nothing left uncollected."""
        self._closing.set()
        incoming = self._incoming
        if incoming is not None:
            incoming.close()
        self.wait(timeout)
        gc.unfreeze()


def freeze_loaded() -> None:
    """Before the first service is built: what the process holds so far (its modules, the registry client) leaves
    the collector's passes for good; a full pass would walk it all (a quarter of a second on Online Retail) mid-request
    every so many allocations. Services stay with the collector: they hold a few thousand tracked objects, and a
    replaced one, whose objects form cycles, has to be collected."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def collect_replaced() -> None:
    """Collect the service a swap replaced, once the check that swapped has let go of it: a pass over what is not
    frozen, milliseconds where unfreezing everything for a full pass held the interpreter for a quarter of a
    second."""
    gc.collect()


def _reasons_logged(warehouse, version: int) -> list[str]:
    """The gate's reasons for promoting ``version``, from the warehouse's log of decisions; [] without one."""
    try:
        with warehouse.connect(read_only=True) as con:
            row = con.execute(f"select reasons from {PROMOTION_LOG} where version = ? and promoted "
                              "order by decided_at desc limit 1", [version]).fetchone()
    except duckdb.Error:  # no decision logged yet (a bundle promoted by hand), or the warehouse busy
        return []
    return list(json.loads(row[0])) if row and row[0] else []


def promotion_record(client, champion: dict[str, Any], warehouse) -> dict[str, Any]:
    """What the page tells about the champion besides current_champion(): why it was promoted (its version tag,
    else the warehouse's decision log), when its metrics were measured and the earlier champions."""
    version = int(champion["version"])
    tags = client.get_model_version(BUNDLE_MODEL, str(version)).tags
    reasons = json.loads(tags[PROMOTION_REASONS_TAG]) if tags.get(PROMOTION_REASONS_TAG) else None
    measured_at = None
    if champion.get("run_id"):
        run = client.get_run(champion["run_id"])
        ended = run.info.end_time or run.info.start_time
        if ended:
            measured_at = datetime.fromtimestamp(ended / 1000, timezone.utc).isoformat(timespec="seconds")
    history = json.loads(client.get_registered_model(BUNDLE_MODEL).tags.get(HISTORY_TAG, "[]"))
    return {"promotion_reasons": reasons if reasons is not None else _reasons_logged(warehouse, version),
            "measured_at": measured_at, "previous_champions": [int(v) for v in history]}
