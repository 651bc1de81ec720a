"""The scale benchmark's accounting: overlapping steps' wall time, and a step's own process tree."""

from __future__ import annotations

import pytest

from benchmarks.scale import Sampler, covered_seconds, parse_events


def test_covered_seconds_counts_overlaps_once():
    # [0, 4] and [2, 6] overlap on [2, 4]: 6 seconds covered; [10, 11] adds 1; [10.5, 10.7] lies inside it.
    assert covered_seconds([(2.0, 6.0), (0.0, 4.0), (10.0, 11.0), (10.5, 10.7)]) == pytest.approx(7.0)
    assert covered_seconds([]) == 0.0


def test_a_process_tree_holds_its_descendants_and_keeps_its_peak():
    sampler = Sampler(limit_bytes=1 << 40)
    mib = 2**20
    # pid -> (parent, bytes, CPU s): 10 runs the steps; 20 is a step whose child 30 is dbt; 40 is another step.
    sampler._record_trees({10: (1, 100 * mib, 5.0), 20: (10, 200 * mib, 3.0), 30: (20, 50 * mib, 2.0),
                           40: (10, 70 * mib, 1.0)})
    # Later dbt has ended (its CPU now in its parent's figure) and the step's own memory fell.
    sampler._record_trees({10: (1, 100 * mib, 5.5), 20: (10, 120 * mib, 5.5), 40: (10, 80 * mib, 1.5)})
    assert sampler.tree(20) == {"cpu_s": 5.5, "peak_mib": 250.0}
    assert sampler.tree(40) == {"cpu_s": 1.5, "peak_mib": 80.0}
    assert sampler.tree(10) == {"cpu_s": 12.5, "peak_mib": 420.0}
    assert sampler.tree(99) is None


def test_sizes_read_as_events():
    assert parse_events("1M") == 1_000_000
    assert parse_events("250k") == 250_000
    assert parse_events("0.3M") == 300_000
    assert parse_events("1200") == 1200
