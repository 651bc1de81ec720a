"""A replacement champion warmed in a child process: the same answers as warming in place, none adopted for a
customer with events recorded meanwhile, and nothing adopted from other marts or after a stop."""

import dataclasses
import threading

import numpy as np
import pytest

from orchestration.registry.tracking import MLflowTracking
from orchestration.serving.service import RecommendationService
from orchestration.serving.warming import WarmingFailed, warm_apart
from orchestration.store.privacy import DEV_PSEUDONYMIZATION_KEY
from orchestration.store.warehouse import Warehouse


@pytest.fixture(scope="module")
def warmed_here(promoted):
    service = RecommendationService.from_champion(Warehouse(home=str(promoted.home)),
                                                  MLflowTracking(home=str(promoted.home)), DEV_PSEUDONYMIZATION_KEY)
    service.warm()
    return service


def _copy(service: RecommendationService) -> RecommendationService:
    return RecommendationService(service.bundle, service.data, service.key, service.version)


def test_the_childs_answers_are_the_ones_ranked_in_place_but_a_customer_with_new_events(promoted, warmed_here):
    incoming = _copy(warmed_here)
    customer = sorted(warmed_here.data.customers)[0]
    incoming.answers.drop(customer)  # as recording or carrying over an event of theirs does
    adopted = warm_apart(incoming, promoted.home, threading.Event())
    expected = dict(warmed_here.answers.items())
    assert adopted == len(expected) and len(expected) > 10
    kept = dict(incoming.answers.items())
    assert set(kept) == set(expected) - {customer}
    for key, top in kept.items():
        np.testing.assert_array_equal(top, expected[key])


def test_answers_from_other_marts_or_after_a_stop_are_not_adopted(promoted, warmed_here):
    other = _copy(warmed_here)
    other.data = dataclasses.replace(other.data, version="not-these-marts")
    with pytest.raises(WarmingFailed, match="marts changed"):
        warm_apart(other, promoted.home, threading.Event())
    assert len(other.answers) == 0
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(WarmingFailed, match="stopped"):
        warm_apart(_copy(warmed_here), promoted.home, stopped)
