import numpy as np
import pytest

from recmodels.stats import bootstrap_interval, paired_comparison


def test_two_customers_resample_to_the_three_possible_means():
    # Drawing 2 of {0, 1} with replacement gives means 0, 0.5, 1 with chances 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # quantiles are 0 and 1.
    interval = bootstrap_interval([0.0, 1.0])
    assert (interval.mean, interval.low, interval.high, interval.n) == (0.5, 0.0, 1.0, 2)


def test_a_two_point_metric_has_the_normal_width():
    # 100 customers, half 0 and half 1: the mean's standard error is 0.5 / sqrt(100) = 0.05, so the 95% interval
    # is about 0.5 +- 0.098.
    interval = bootstrap_interval(np.repeat([0.0, 1.0], 50))
    assert interval.mean == 0.5
    assert interval.low == pytest.approx(0.402, abs=0.015)
    assert interval.high == pytest.approx(0.598, abs=0.015)


def test_the_interval_is_seeded_and_degenerate_cases_collapse():
    values = np.linspace(0, 1, 37) ** 2
    assert bootstrap_interval(values) == bootstrap_interval(values)
    assert bootstrap_interval(values, seed=1) != bootstrap_interval(values)
    assert bootstrap_interval([0.3] * 5).low == bootstrap_interval([0.3] * 5).high == pytest.approx(0.3)
    assert bootstrap_interval([0.7]).as_dict() == {"mean": 0.7, "ci_low": 0.7, "ci_high": 0.7, "n": 1}
    assert bootstrap_interval([]).n == 0 and np.isnan(bootstrap_interval([]).mean)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_interval([0.1, float("nan")])
    with pytest.raises(ValueError, match="same customers"):
        paired_comparison([0.1, 0.2], [0.1])


def test_a_clearly_better_challenger_is_superior():
    reference = np.linspace(0, 0.8, 40)
    comparison = paired_comparison(reference + 0.1, reference)
    # Every customer gains exactly 0.1: the difference has no spread, whatever the customers' own spread.
    assert comparison.difference.low == pytest.approx(0.1) and comparison.difference.high == pytest.approx(0.1)
    assert comparison.superior() and comparison.non_inferior(0.0)


def test_a_clearly_worse_challenger_is_refused_even_with_a_tolerance():
    reference = np.linspace(0.2, 1, 40)
    comparison = paired_comparison(reference - 0.2, reference)
    assert comparison.difference.mean == pytest.approx(-0.2)
    assert not comparison.non_inferior(0.05) and not comparison.superior()


def test_noise_is_neither_better_nor_worse_and_the_tolerance_decides():
    # 100 customers whose difference is +0.5 or -0.5: mean 0, 95% interval about +-0.098.
    differences = np.tile([0.5, -0.5], 50)
    reference = np.full(100, 0.5)
    comparison = paired_comparison(reference + differences, reference)
    assert comparison.difference.low < 0 < comparison.difference.high
    assert comparison.difference.low == pytest.approx(-0.098, abs=0.015)
    assert not comparison.superior()
    assert not comparison.non_inferior(0.05)  # the interval reaches below -0.05
    assert comparison.non_inferior(0.15)  # ... but not below -0.15
    assert (comparison.challenger_mean, comparison.reference_mean) == (0.5, 0.5)
