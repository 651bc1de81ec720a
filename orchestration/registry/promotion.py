"""The promotion gate: is a challenger better, and the registry moves that follow (promote, refuse, rollback).

``decide_promotion`` is a pure function of metrics and check results. The registry functions take an
``MlflowClient`` (``MLflowResource.client()``) and keep everything on the registered model itself: the
``champion`` alias points at the serving version, version tags say what it was promoted with (or why it was
refused), and a registered-model tag ``champion_history`` lists earlier champions so a rollback needs no other
state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from recmodels.stats import PairedComparison

CHAMPION_ALIAS = "champion"
BUNDLE_MODEL = "recsys-recommender"  # registered model name of the promoted bundle
HISTORY_TAG = "champion_history"  # registered-model tag: JSON list of earlier champion versions, oldest first
METRICS_TAG = "metrics"  # version tag: JSON object with the exact metric names ("ndcg@10")
PROMOTION_REASONS_TAG = "promotion_reasons"  # version tags: JSON list of the gate's reasons, either way
REFUSAL_REASONS_TAG = "refusal_reasons"
PROMOTION_LOG = "ml.promotion_log"  # warehouse table: one row per gate decision
# How far below the champion (mean per-customer NDCG@10, paired) the lower bound of a challenger's interval may be:
# a retrain on much the same data is promoted unless it is worse with confidence.
DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: tuple[str, ...]  # every blocking reason when refused, else why it passed

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reasons": list(self.reasons)}


def decide_promotion(
    challenger: Mapping[str, float],
    champion: PairedComparison | Mapping[str, float] | None,
    best_baseline: tuple[str, float],
    failed_checks: Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE,
    metric: str = "ndcg@10",
) -> PromotionDecision:
    """Promote only when no blocking check failed, the metric beats the best baseline and the challenger is not
    worse than the champion by more than ``tolerance``.

    ``champion`` is, by preference, the paired comparison of the two on the same customers (non-inferiority: the
    lower bound of the 95% interval of the mean per-customer difference is above ``-tolerance``); a mapping of
    the champion's recorded metrics is compared by point value, for a champion that could not be re-scored.
    Comparisons with a missing or NaN value fail closed."""
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    blocking: list[str] = []
    passed: list[str] = []

    if failed_checks:
        blocking.append(f"Blocking checks failed: {', '.join(failed_checks)}.")
    else:
        passed.append("No blocking check failed.")

    value = challenger.get(metric)
    if value is None or not math.isfinite(value):
        what = "is missing" if value is None else f"is {value}, not a finite number"
        blocking.append(f"Challenger {metric} {what}; nothing to compare.")
        return PromotionDecision(False, tuple(blocking))

    baseline_name, baseline_value = best_baseline
    comparison = (
        f"Challenger {metric} {value:.4f} {{}} the best other model {baseline_name} ({baseline_value:.4f})."
    )
    if value > baseline_value:  # strictly; False when the baseline is NaN
        passed.append(comparison.format("beats"))
    else:
        blocking.append(comparison.format("does not beat"))

    if champion is None:
        passed.append("First model: no champion to compare against.")
    elif isinstance(champion, PairedComparison):
        (passed if champion.non_inferior(tolerance) else blocking).append(_paired_reason(champion, tolerance, metric))
    else:
        held = champion.get(metric)
        if held is None or not math.isfinite(held):
            blocking.append(f"Champion {metric} is {'missing' if held is None else held}; cannot compare.")
        elif value < held - tolerance:
            blocking.append(
                f"Challenger {metric} {value:.4f} is below the champion's {held:.4f} "
                f"by more than the tolerance {tolerance:.4f}."
            )
        else:
            passed.append(
                f"Challenger {metric} {value:.4f} is within tolerance {tolerance:.4f} "
                f"of the champion's {held:.4f} or above it."
            )

    if blocking:
        return PromotionDecision(False, tuple(blocking))
    return PromotionDecision(True, tuple(passed))


def _paired_reason(comparison: PairedComparison, tolerance: float, metric: str) -> str:
    d = comparison.difference
    if d.n == 0:
        return "The champion and the challenger share no evaluated customer; cannot compare."
    said = (f"Paired with the champion on the same {d.n:,} customers, the mean per-customer {metric} difference is "
            f"{d.mean:+.4f} (95% interval {d.low:+.4f} to {d.high:+.4f}; challenger {comparison.challenger_mean:.4f}, "
            f"champion {comparison.reference_mean:.4f})")
    if comparison.non_inferior(tolerance):
        return f"{said}: its lower bound is above -{tolerance:.4f}, so the challenger is not worse."
    return f"{said}: its lower bound is not above -{tolerance:.4f}, so the challenger may be worse."


def blocking_check_failures(states: Mapping[str, tuple[str, str] | None]) -> list[str]:
    """The checks that block promotion, from each check's latest (status, severity): a failure of severity
    ERROR, or no finished evaluation at all (never run, or planned and never finished). A failure of severity
    WARN is a warning by the check author's choice, as Dagster itself does not block on it."""
    failures = []
    for name in sorted(states):
        state = states[name]
        if state is None:
            failures.append(f"{name} (never ran)")
        elif state[0] == "FAILED" and state[1] != "WARN":
            failures.append(name)
        elif state[0] not in ("SUCCEEDED", "FAILED"):
            failures.append(f"{name} (did not finish: {state[0].lower()})")
    return failures


def blocking_checks_upstream(definitions: Sequence[Any], gated: Any, ancestors: Any) -> list[Any]:
    """Check keys of every blocking check on ``ancestors`` (asset keys), from Dagster assets and checks
    definitions, read through their public ``check_specs``; ``gated`` (the deciding asset's key) is left out."""
    return sorted((spec.key for definition in definitions for spec in definition.check_specs
                   if spec.blocking and spec.asset_key in ancestors and spec.asset_key != gated),
                  key=lambda key: (key.asset_key.to_user_string(), key.name))


def check_states(keys: Sequence[Any], event_log: Any) -> dict[str, tuple[str, str] | None]:
    """Latest (status, severity) of each check key in Dagster's ``event_log`` storage; None where never run.

    Dagster objects come in and are read through their public attributes only, so this module imports no Dagster.
    """
    records = event_log.get_latest_asset_check_execution_by_key(list(keys))
    states = {}
    for key in keys:
        record = records.get(key)
        label = f"{key.asset_key.to_user_string()}:{key.name}"
        if record is None:
            states[label] = None
            continue
        severity = "ERROR"
        if record.status.value == "FAILED" and record.event is not None:
            severity = record.event.dagster_event.event_specific_data.severity.value
        states[label] = (record.status.value, severity)
    return states


def _utc_iso(now: datetime | None) -> str:
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:  # a naive time is taken as UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _history(client: Any, model_name: str) -> list[int]:
    return [int(v) for v in json.loads(client.get_registered_model(model_name).tags.get(HISTORY_TAG, "[]"))]


def current_champion(client: Any, model_name: str = BUNDLE_MODEL) -> dict[str, Any] | None:
    """The version the ``champion`` alias points at, described from its tags; None when there is none."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    try:
        registered = client.get_registered_model(model_name)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    if CHAMPION_ALIAS not in registered.aliases:
        return None
    version = client.get_model_version(model_name, str(registered.aliases[CHAMPION_ALIAS]))
    return {
        "model": model_name,
        "version": int(version.version),
        "run_id": version.run_id,
        "metrics": json.loads(version.tags.get(METRICS_TAG, "{}")),
        "data_version": version.tags.get("data_version"),
        "promoted_at": version.tags.get("promoted_at"),
        "promotion_reasons": json.loads(version.tags.get(PROMOTION_REASONS_TAG, "[]")),
    }


def promote(
    client: Any,
    version: int,
    metrics: Mapping[str, float],
    data_version: str,
    model_name: str = BUNDLE_MODEL,
    now: datetime | None = None,
    reasons: Sequence[str] = (),
) -> dict[str, Any]:
    """Tag ``version`` with what it was promoted on and why (the gate's ``reasons``), remember the previous
    champion, move the alias."""
    name, number = model_name, str(version)
    client.get_model_version(name, number)  # fail before any write when the version does not exist
    previous = current_champion(client, name)
    tags = {
        METRICS_TAG: json.dumps({k: float(v) for k, v in metrics.items()}),
        "data_version": data_version,
        "promoted_at": _utc_iso(now),
        "promotion": "promoted",
        PROMOTION_REASONS_TAG: json.dumps(list(reasons)),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, number, key, value)
    stale = client.get_model_version(name, number).tags
    for key in (REFUSAL_REASONS_TAG, "rolled_back_at"):  # from an earlier refusal or rollback of this version
        if key in stale:
            client.delete_model_version_tag(name, number, key)
    if previous is not None and previous["version"] != int(version):
        history = _history(client, name) + [previous["version"]]
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(name, CHAMPION_ALIAS, number)
    return current_champion(client, name)


def record_refusal(
    client: Any, version: int, decision: PromotionDecision, model_name: str = BUNDLE_MODEL
) -> None:
    """Tag a refused version with the gate's reasons, so the registry shows why it is not the champion."""
    if decision.promote:
        raise ValueError("record_refusal was given a decision that promotes")
    number = str(version)
    client.set_model_version_tag(model_name, number, "promotion", "refused")
    client.set_model_version_tag(model_name, number, REFUSAL_REASONS_TAG, json.dumps(list(decision.reasons)))


def rollback(client: Any, model_name: str = BUNDLE_MODEL, now: datetime | None = None) -> dict[str, Any]:
    """Move the alias back to the previous champion; the demoted version is tagged ``rolled_back_at``."""
    current = current_champion(client, model_name)
    if current is None:
        raise LookupError(f"{model_name} has no {CHAMPION_ALIAS}; nothing to roll back")
    history = _history(client, model_name)
    if not history:
        raise LookupError(
            f"{model_name} version {current['version']} is the only {CHAMPION_ALIAS} so far; "
            "no previous one to restore"
        )
    restored = history.pop()
    client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(restored))
    client.set_model_version_tag(model_name, str(current["version"]), "rolled_back_at", _utc_iso(now))
    return current_champion(client, model_name)
