"""Uncertainty of per-customer metrics: a seeded bootstrap over customers, and the paired comparison of two
models scored on the same customers that the promotion gate decides with.

A ranking metric is a mean over customers, and customers differ far more than models do, so an interval around
one model's mean is wide while the interval around the mean *difference* of two models on the same customers is
narrow: the gate compares models paired, never by the overlap of their own intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # every interval the pipeline reports
N_RESAMPLES = 2000  # bootstrap resamples: the interval's bounds move by well under 1% of its width between seeds
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile-bootstrap interval and the number of customers it rests on."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {f"{prefix}mean": self.mean, f"{prefix}ci_low": self.low, f"{prefix}ci_high": self.high,
                f"{prefix}n": self.n}


Statistic = Callable[[np.ndarray], np.ndarray]  # (resamples, n) draw counts per customer -> (resamples,) values


def resample_counts(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``n`` customers as chunks of a (resamples, n) matrix: how often each customer is
    drawn. Counts rather than index lists let every metric of a model share the draws, as one matrix product."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 4_000_000 // max(n, 1)))  # memory stays flat for any number of customers
    for start in range(0, n_resamples, chunk):
        yield rng.multinomial(n, np.full(n, 1 / n), size=min(chunk, n_resamples - start))


def bootstrap_intervals(per_customer: Mapping[str, np.ndarray], statistics: Mapping[str, Statistic] | None = None,
                        confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                        seed: int = SEED) -> dict[str, Interval]:
    """Percentile-bootstrap intervals of the mean of each per-customer array, and of each ``statistic`` (a
    function of the draw counts, such as catalogue coverage), all from the same seeded resamples of customers.
    No customers: NaN, n = 0; one customer or no spread: the interval collapses to the point estimate."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if not per_customer:
        raise ValueError("bootstrap_intervals needs at least one per-customer array to know the customers")
    statistics = dict(statistics or {})
    names = list(per_customer)
    columns = [np.asarray(per_customer[name], dtype=np.float64) for name in names]
    if any(column.ndim != 1 for column in columns):
        raise ValueError("each metric must be one number per customer (1-D)")
    lengths = {len(column) for column in columns}
    if len(lengths) > 1:
        raise ValueError(f"every metric needs one value per customer of the same customers, got lengths {lengths}")
    bad = [name for name, column in zip(names, columns) if np.isnan(column).any()]
    if bad:
        raise ValueError(f"{', '.join(bad)} hold NaN: a metric must be defined for every customer it averages over")
    n = lengths.pop()
    if n == 0:
        return {name: Interval(float("nan"), float("nan"), float("nan"), 0) for name in [*names, *statistics]}
    matrix = np.column_stack(columns)
    points = {**{name: float(column.mean()) for name, column in zip(names, columns)},
              **{name: float(statistic(np.ones((1, n), dtype=np.int64))[0]) for name, statistic in statistics.items()}}
    if n == 1:
        return {name: Interval(value, value, value, 1) for name, value in points.items()}
    resampled: dict[str, list[np.ndarray]] = {name: [] for name in points}
    for counts in resample_counts(n, n_resamples, seed):
        means = counts @ matrix / n
        for i, name in enumerate(names):
            resampled[name].append(means[:, i])
        for name, statistic in statistics.items():
            resampled[name].append(np.asarray(statistic(counts), dtype=np.float64))
    tail = (1 - confidence) / 2
    out = {}
    for name, point in points.items():
        low, high = np.quantile(np.concatenate(resampled[name]), [tail, 1 - tail])
        # Rounding in the matrix product can put a constant metric's bounds a hair off its mean.
        out[name] = Interval(point, min(float(low), point), max(float(high), point), n)
    return out


def bootstrap_interval(values, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                       seed: int = SEED) -> Interval:
    """The mean of per-customer ``values`` with its percentile-bootstrap interval (seeded: the same values give
    the same interval)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be one number per customer (1-D), got shape {values.shape}")
    return bootstrap_intervals({"mean": values}, None, confidence, n_resamples, seed)["mean"]


@dataclass(frozen=True)
class PairedComparison:
    """Challenger minus reference, per customer, on the same customers."""

    difference: Interval
    challenger_mean: float
    reference_mean: float

    def non_inferior(self, tolerance: float) -> bool:
        """The lower bound of the difference's interval is above ``-tolerance``: the challenger is, with the
        interval's confidence, no worse than the reference by more than ``tolerance``."""
        return self.difference.n > 0 and self.difference.low > -tolerance

    def superior(self) -> bool:
        """Better with the interval's confidence: the whole interval of the difference is above zero."""
        return self.difference.n > 0 and self.difference.low > 0


def paired_comparison(challenger, reference, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> PairedComparison:
    """Bootstrap the mean per-customer difference ``challenger - reference``; both arrays hold one value per
    customer, in the same customer order."""
    challenger = np.asarray(challenger, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if challenger.shape != reference.shape:
        raise ValueError(f"a paired comparison needs the same customers on both sides, got {challenger.shape} "
                         f"and {reference.shape} values")
    difference = bootstrap_interval(challenger - reference, confidence, n_resamples, seed)
    means = (float(challenger.mean()), float(reference.mean())) if len(challenger) else (float("nan"),) * 2
    return PairedComparison(difference, *means)
