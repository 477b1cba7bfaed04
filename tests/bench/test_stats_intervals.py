"""Bootstrap intervals and line fits of :mod:`session_proxy_bench.stats`.

The intervals must be right (they cover what they should, they resample
within repetitions) and reproducible (the same samples give the same bytes in
any order of evaluation, on any machine), since the report is regenerated
byte for byte from a committed results file.
"""

from __future__ import annotations

import random

import pytest

from session_proxy_bench.stats import (
    Interval,
    bootstrap,
    fast_mean,
    fast_median,
    fit_line,
    geometric_mean,
    percentile,
    percentile_interval,
    ratio_replicates,
    repetition_strata,
)


def _samples(values: list[float], repetition: int | None = None) -> list[dict]:
    return [{"latency_s": v, **({} if repetition is None else {"repetition": repetition})}
            for v in values]


def test_fast_median_equals_the_percentile() -> None:
    rng = random.Random(3)
    for n in (1, 2, 5, 10, 75):
        values = [rng.random() for _ in range(n)]
        assert fast_median(list(values)) == percentile(values, 50)
    assert fast_mean([1.0, 2.0, 6.0]) == 3.0


def test_same_key_same_replicates_different_key_different_draws() -> None:
    strata = [[float(v) for v in range(1, 26)]]
    first = bootstrap(strata, key="cell-a")
    assert first == bootstrap(strata, key="cell-a")
    assert first != bootstrap(strata, key="cell-b")
    assert len(first) == 1000
    # Every replicate is a median of values of the cell.
    assert set(first) <= {v / 2 for v in range(2, 51)}


def test_replicates_are_pinned() -> None:
    """The draws are SHAKE-256 based: these numbers must never change across Pythons."""
    replicates = bootstrap([[1.0, 2.0, 3.0, 4.0, 5.0]], key="pinned", resamples=8)
    assert replicates == [4.0, 2.0, 3.0, 4.0, 3.0, 2.0, 4.0, 3.0]


def test_interval_covers_the_median_of_a_wide_sample() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 0.5) for _ in range(60)]
    estimate = percentile(values, 50)
    interval = percentile_interval(bootstrap([values], key="wide"), estimate)
    assert interval.low < estimate < interval.high
    # A sample of 60 pins its median to well within the sample's range.
    assert min(values) < interval.low and interval.high < max(values)
    assert not interval.excludes(estimate) and interval.excludes(max(values) * 2)


def test_constant_cells_give_zero_width_and_one_sample_no_interval() -> None:
    interval = percentile_interval(bootstrap([[2.0] * 10], key="flat"), 2.0)
    assert (interval.low, interval.high) == (2.0, 2.0)
    assert not Interval(2.0).has_interval
    assert percentile_interval([], 2.0) == Interval(2.0)


def test_resampling_stays_within_repetitions() -> None:
    # Two repetitions, one fast and one slow: every stratified resample keeps 5 of each,
    # so its median is always between the two groups; pooled resampling would wander.
    samples = _samples([1.0] * 5, repetition=0) + _samples([100.0] * 5, repetition=1)
    strata = repetition_strata(samples)
    assert strata == [[1.0] * 5, [100.0] * 5]
    stratified = bootstrap(strata, key="two-repetitions")
    assert set(stratified) == {50.5}
    pooled = bootstrap([[v for s in strata for v in s]], key="two-repetitions")
    assert {1.0, 100.0} <= set(pooled)


def test_strata_ignore_sample_order_and_missing_values() -> None:
    samples = _samples([3.0, 1.0], repetition=1) + _samples([2.0], repetition=0)
    samples.append({"latency_s": None, "repetition": 0})
    assert repetition_strata(samples) == [[2.0], [3.0, 1.0]]
    assert repetition_strata(list(reversed(samples))) == [[2.0], [1.0, 3.0]]
    assert repetition_strata(_samples([1.0, 2.0])) == [[1.0, 2.0]]


def test_ratio_interval_of_independent_cells() -> None:
    rng = random.Random(11)
    slow = [rng.gauss(20.0, 1.0) for _ in range(40)]
    fast = [rng.gauss(10.0, 0.5) for _ in range(40)]
    ratios = ratio_replicates(bootstrap([slow], key="slow"), bootstrap([fast], key="fast"))
    interval = percentile_interval(ratios, percentile(slow, 50) / percentile(fast, 50))
    assert 1.8 < interval.low < interval.estimate < interval.high < 2.2
    assert ratio_replicates([1.0, 2.0], [0.0, 4.0]) == [0.5]


def test_geometric_mean() -> None:
    assert geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        geometric_mean([1.0, 0.0])


def test_fit_line_reports_quality() -> None:
    exact = fit_line([(0.0, 1.0), (1.0, 3.0), (5.0, 11.0)])
    assert (exact.intercept, exact.slope) == pytest.approx((1.0, 2.0))
    assert exact.r_squared == pytest.approx(1.0) and exact.max_residual == pytest.approx(0.0)
    scattered = fit_line([(0.0, 5.0), (1.0, 1.0), (5.0, 4.0), (10.0, 2.0)])
    assert scattered.r_squared < 0.5 and scattered.max_residual > 1.0
    assert exact.at(10.0) == pytest.approx(21.0)


def test_large_cells_use_two_byte_draws() -> None:
    values = [float(v) for v in range(300)]
    replicates = bootstrap([values], key="large", resamples=50)
    assert replicates == bootstrap([values], key="large", resamples=50)
    assert all(100 < r < 200 for r in replicates)
