"""The promotion gate's decision table; promote / refuse / rollback against a real SQLite MLflow registry."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest

from orchestration.registry.promotion import (
    BUNDLE_MODEL,
    CHAMPION_ALIAS,
    PromotionDecision,
    current_champion,
    decide_promotion,
    promote,
    record_refusal,
    rollback,
)

BASELINE = ("popularity", 0.2)


# ---- decision table


def test_promotes_when_everything_passes_and_says_why():
    decision = decide_promotion({"ndcg@10": 0.3}, {"ndcg@10": 0.25}, BASELINE, [])
    assert decision.promote
    assert decision.reasons == (
        "No blocking check failed.",
        "Challenger ndcg@10 0.3000 beats the best other model popularity (0.2000).",
        "Challenger ndcg@10 0.3000 is within tolerance 0.0100 of the champion's 0.2500 or above it.",
    )
    assert decision.to_dict() == {"promote": True, "reasons": list(decision.reasons)}


def test_decision_is_frozen():
    decision = decide_promotion({"ndcg@10": 0.3}, None, BASELINE, [])
    with pytest.raises(AttributeError):
        decision.promote = False  # type: ignore[misc]


def test_failed_checks_alone_refuse_and_are_named():
    checks = ["embedding_norms", "score_range"]
    decision = decide_promotion({"ndcg@10": 0.3}, {"ndcg@10": 0.25}, BASELINE, checks)
    assert not decision.promote
    assert decision.reasons == ("Blocking checks failed: embedding_norms, score_range.",)


def test_not_beating_the_baseline_alone_refuses_with_both_numbers():
    decision = decide_promotion({"ndcg@10": 0.15}, None, BASELINE, [])
    assert not decision.promote
    assert decision.reasons == (
        "Challenger ndcg@10 0.1500 does not beat the best other model popularity (0.2000).",
    )


def test_equalling_the_baseline_is_not_beating_it():
    decision = decide_promotion({"ndcg@10": 0.2}, None, BASELINE, [])
    assert not decision.promote
    assert "does not beat the best other model popularity (0.2000)" in decision.reasons[0]


def test_falling_behind_the_champion_alone_refuses_with_both_numbers():
    decision = decide_promotion({"ndcg@10": 0.3}, {"ndcg@10": 0.35}, BASELINE, [], tolerance=0.01)
    assert not decision.promote
    assert decision.reasons == (
        "Challenger ndcg@10 0.3000 is below the champion's 0.3500 by more than the tolerance 0.0100.",
    )


def test_tolerance_boundary_is_inclusive():
    # 0.5, 0.25 and 0.25 are exact in binary, so challenger == champion - tolerance holds exactly.
    assert decide_promotion({"ndcg@10": 0.25}, {"ndcg@10": 0.5}, ("pop", 0.1), [], tolerance=0.25).promote
    just_below = {"ndcg@10": math.nextafter(0.25, 0)}
    below = decide_promotion(just_below, {"ndcg@10": 0.5}, ("pop", 0.1), [], tolerance=0.25)
    assert not below.promote


def test_a_tie_with_the_champion_promotes_at_zero_tolerance():
    assert decide_promotion({"ndcg@10": 0.3}, {"ndcg@10": 0.3}, BASELINE, []).promote


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_metric_refuses(value):
    decision = decide_promotion({"ndcg@10": value}, None, BASELINE, [])
    assert not decision.promote
    assert decision.reasons == (f"Challenger ndcg@10 is {value}, not a finite number; nothing to compare.",)


def test_missing_metric_refuses():
    decision = decide_promotion({"recall@10": 0.5}, None, BASELINE, [])
    assert not decision.promote
    assert decision.reasons == ("Challenger ndcg@10 is missing; nothing to compare.",)


def test_first_model_promoted_when_it_beats_the_baseline():
    decision = decide_promotion({"ndcg@10": 0.21}, None, BASELINE, [])
    assert decision.promote
    assert decision.reasons[-1] == "First model: no champion to compare against."


def test_first_model_refused_when_it_does_not_beat_the_baseline():
    assert not decide_promotion({"ndcg@10": 0.19}, None, BASELINE, []).promote


def test_several_reasons_at_once_are_all_listed():
    decision = decide_promotion({"ndcg@10": 0.1}, {"ndcg@10": 0.3}, BASELINE, ["score_range"], tolerance=0.05)
    assert not decision.promote
    assert decision.reasons == (
        "Blocking checks failed: score_range.",
        "Challenger ndcg@10 0.1000 does not beat the best other model popularity (0.2000).",
        "Challenger ndcg@10 0.1000 is below the champion's 0.3000 by more than the tolerance 0.0500.",
    )


def test_failed_checks_are_still_named_when_the_metric_is_nan():
    decision = decide_promotion({"ndcg@10": float("nan")}, None, BASELINE, ["score_range"])
    assert decision.reasons == (
        "Blocking checks failed: score_range.",
        "Challenger ndcg@10 is nan, not a finite number; nothing to compare.",
    )


def test_champion_without_the_metric_fails_closed():
    decision = decide_promotion({"ndcg@10": 0.3}, {}, BASELINE, [])
    assert not decision.promote
    assert decision.reasons == ("Champion ndcg@10 is missing; cannot compare.",)


def test_another_metric_can_be_gated():
    decision = decide_promotion({"recall@20": 0.4}, {"recall@20": 0.5}, ("pop", 0.3), [], metric="recall@20")
    assert decision.reasons == (
        "Challenger recall@20 0.4000 is below the champion's 0.5000 by more than the tolerance 0.0100.",
    )


@pytest.mark.parametrize("tolerance", [-0.01, float("nan")])
def test_bad_tolerance_is_an_error(tolerance):
    with pytest.raises(ValueError, match="tolerance"):
        decide_promotion({"ndcg@10": 0.3}, None, BASELINE, [], tolerance=tolerance)


# ---- registry


@pytest.fixture
def client(recsys_home, monkeypatch):
    """A real SQLite MLflow store under a tmp RECSYS_HOME, never the user's tracking URI."""
    from orchestration.defs.resources import MLflowResource

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking = MLflowResource(home=str(recsys_home))
    assert tracking.resolved_tracking_uri().startswith(f"sqlite:///{recsys_home}")
    return tracking.client()


def register_versions(client, home, count: int = 3) -> list[str]:
    """``count`` versions of BUNDLE_MODEL, each from a real run with a folder of its own; returns run ids."""
    artifacts = (home / "artifacts-test").as_uri()
    experiment = client.create_experiment("promotion-test", artifact_location=artifacts)
    client.create_registered_model(BUNDLE_MODEL)
    run_ids = []
    for number in range(1, count + 1):
        run = client.create_run(experiment)
        bundle = home / f"bundle-{number}"
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text("{}")
        version = client.create_model_version(BUNDLE_MODEL, source=bundle.as_uri(), run_id=run.info.run_id)
        assert int(version.version) == number
        run_ids.append(run.info.run_id)
    return run_ids


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_no_registered_model_means_no_champion(client):
    assert current_champion(client) is None


def test_no_alias_means_no_champion(client, recsys_home):
    register_versions(client, recsys_home, 1)
    assert current_champion(client) is None


def test_promote_then_promote_again_keeps_history_and_rolls_back(client, recsys_home):
    run_ids = register_versions(client, recsys_home)

    first = promote(client, 1, {"ndcg@10": 0.3, "recall@10": 0.4}, "data-a", now=NOW, reasons=["No blocking check failed."])
    assert first == {
        "model": BUNDLE_MODEL,
        "version": 1,
        "run_id": run_ids[0],
        "metrics": {"ndcg@10": 0.3, "recall@10": 0.4},
        "data_version": "data-a",
        "promoted_at": "2026-01-02T03:04:05+00:00",
        "promotion_reasons": ["No blocking check failed."],
    }
    tags = client.get_model_version(BUNDLE_MODEL, "1").tags
    # One tag per fact: the metrics live once, as JSON with their exact names.
    assert tags["promotion"] == "promoted" and json.loads(tags["metrics"]) == {"ndcg@10": 0.3, "recall@10": 0.4}
    assert not [key for key in tags if key.startswith("metric.") or key == "ndcg_10"]
    assert json.loads(client.get_registered_model(BUNDLE_MODEL).tags.get("champion_history", "[]")) == []

    second = promote(client, 2, {"ndcg@10": 0.35}, "data-b")
    assert second["version"] == 2 and second["run_id"] == run_ids[1] and second["data_version"] == "data-b"
    assert datetime.fromisoformat(second["promoted_at"]).utcoffset().total_seconds() == 0
    assert client.get_model_version_by_alias(BUNDLE_MODEL, CHAMPION_ALIAS).version in (2, "2")
    assert json.loads(client.get_registered_model(BUNDLE_MODEL).tags["champion_history"]) == [1]
    assert current_champion(client) == second

    restored = rollback(client, now=NOW)
    assert restored == first  # version 1 with the tags it was promoted with
    assert json.loads(client.get_registered_model(BUNDLE_MODEL).tags["champion_history"]) == []
    assert client.get_model_version(BUNDLE_MODEL, "2").tags["rolled_back_at"] == "2026-01-02T03:04:05+00:00"

    with pytest.raises(LookupError, match="no previous one"):
        rollback(client)
    assert current_champion(client)["version"] == 1  # a refused rollback changes nothing


def test_history_is_oldest_first_and_repromoting_the_champion_adds_nothing(client, recsys_home):
    register_versions(client, recsys_home)
    for version in (1, 2, 3, 3):
        promote(client, version, {"ndcg@10": 0.3}, "data")
    assert json.loads(client.get_registered_model(BUNDLE_MODEL).tags["champion_history"]) == [1, 2]
    assert rollback(client)["version"] == 2
    assert rollback(client)["version"] == 1


def test_rollback_without_champion_raises(client, recsys_home):
    with pytest.raises(LookupError, match="no champion"):
        rollback(client)
    register_versions(client, recsys_home, 1)
    with pytest.raises(LookupError, match="no champion"):
        rollback(client)


def test_promoting_a_missing_version_writes_nothing(client, recsys_home):
    from mlflow.exceptions import MlflowException

    register_versions(client, recsys_home, 1)
    promote(client, 1, {"ndcg@10": 0.3}, "data")
    with pytest.raises(MlflowException):
        promote(client, 7, {"ndcg@10": 0.3}, "data")
    assert current_champion(client)["version"] == 1
    assert "champion_history" not in client.get_registered_model(BUNDLE_MODEL).tags


def test_refusal_is_recorded_on_the_version(client, recsys_home):
    register_versions(client, recsys_home, 2)
    promote(client, 1, {"ndcg@10": 0.3}, "data")
    decision = decide_promotion({"ndcg@10": 0.1}, {"ndcg@10": 0.3}, BASELINE, ["score_range"])
    record_refusal(client, 2, decision)

    tags = client.get_model_version(BUNDLE_MODEL, "2").tags
    assert tags["promotion"] == "refused"
    assert json.loads(tags["refusal_reasons"]) == list(decision.reasons)
    assert current_champion(client)["version"] == 1  # a refusal leaves the alias alone

    promote(client, 2, {"ndcg@10": 0.4}, "data")  # e.g. after the check was fixed
    tags = client.get_model_version(BUNDLE_MODEL, "2").tags
    assert tags["promotion"] == "promoted" and "refusal_reasons" not in tags


def test_record_refusal_rejects_a_promoting_decision(client, recsys_home):
    register_versions(client, recsys_home, 1)
    with pytest.raises(ValueError):
        record_refusal(client, 1, PromotionDecision(True, ("ok",)))


def test_blocking_check_failures_reads_status_severity_and_absence():
    from orchestration.registry.promotion import blocking_check_failures

    states = {
        "b:passed": ("SUCCEEDED", "ERROR"),
        "a:failed": ("FAILED", "ERROR"),
        "c:warned": ("FAILED", "WARN"),
        "d:never": None,
        "e:planned": ("PLANNED", "ERROR"),
    }
    assert blocking_check_failures(states) == ["a:failed", "d:never (never ran)", "e:planned (did not finish: planned)"]
    assert blocking_check_failures({"x:ok": ("SUCCEEDED", "ERROR")}) == []


# ---- the paired rule against the champion


def test_a_challenger_within_noise_of_the_champion_is_promoted_paired():
    import numpy as np

    from recmodels.stats import paired_comparison

    champion = np.tile([0.2, 0.4], 200)  # 400 customers
    # Every customer within +-0.005 of the champion: the interval of the mean difference lies within -0.01.
    paired = paired_comparison(champion + np.tile([0.005, -0.005], 200), champion)
    decision = decide_promotion({"ndcg@10": 0.3}, paired, BASELINE, [])
    assert decision.promote
    assert ("Paired with the champion on the same 400 customers, the mean per-customer ndcg@10 difference is "
            "+0.0000 (95% interval") in decision.reasons[-1]
    assert decision.reasons[-1].endswith("its lower bound is above -0.0100, so the challenger is not worse.")


def test_a_challenger_worse_on_most_customers_is_refused_paired_though_it_beats_the_baseline():
    import numpy as np

    from recmodels.stats import paired_comparison

    champion = np.linspace(0.3, 0.6, 300)
    challenger = champion - 0.03  # every customer 0.03 worse: the whole interval is at -0.03
    decision = decide_promotion({"ndcg@10": float(challenger.mean())}, paired_comparison(challenger, champion),
                                BASELINE, [])
    assert not decision.promote
    assert decision.reasons[-1].endswith("its lower bound is not above -0.0100, so the challenger may be worse.")
    assert "-0.0300 (95% interval -0.0300 to -0.0300" in decision.reasons[-1]


def test_a_champion_without_shared_customers_blocks():
    from recmodels.stats import paired_comparison

    decision = decide_promotion({"ndcg@10": 0.3}, paired_comparison([], []), BASELINE, [])
    assert not decision.promote and "share no evaluated customer" in decision.reasons[-1]
