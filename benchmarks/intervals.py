"""Percentile bootstrap intervals for the report's question sections.

A small stand-in until :mod:`session_proxy_bench.stats` holds a bootstrap
helper (a report section may import no sibling section, so it lives
here): :func:`percentile_interval` gives a statistic of a sample with its
95% percentile-bootstrap interval, from a fixed seed so that regenerating
a report from the same results writes the same text.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from .stats import percentile

RESAMPLES = 400
SEED = 20260101


def bootstrap(values: Sequence[float], statistic: Callable[[Sequence[float]], float],
              level: float = 0.95) -> tuple[float, float, float] | None:
    """``(estimate, low, high)`` of ``statistic`` over ``values``; None without values."""
    if not values:
        return None
    rng = random.Random(SEED)
    n = len(values)
    estimates = sorted(statistic([values[rng.randrange(n)] for _ in range(n)])
                       for _ in range(RESAMPLES))
    tail = (1 - level) / 2 * 100
    return (statistic(values), percentile(estimates, tail), percentile(estimates, 100 - tail))


def percentile_interval(values: Sequence[float], q: float) -> tuple[float, float, float] | None:
    """The ``q``-th percentile of ``values`` with its 95% bootstrap interval."""
    return bootstrap(values, lambda sample: percentile(sample, q))


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float], q: float = 50,
                   statistic: Callable[[Sequence[float]], float] | None = None
                   ) -> tuple[float, float, float] | None:
    """``statistic(numerator) / statistic(denominator)`` with its 95% interval (the two
    samples resampled independently); the statistic is the ``q``-th percentile unless given."""
    if not numerator or not denominator:
        return None
    stat = statistic or (lambda sample: percentile(sample, q))
    rng = random.Random(SEED)
    ratios = []
    for _ in range(RESAMPLES):
        top = stat([numerator[rng.randrange(len(numerator))] for _ in numerator])
        bottom = stat([denominator[rng.randrange(len(denominator))] for _ in denominator])
        if bottom:
            ratios.append(top / bottom)
    base = stat(denominator)
    if not ratios or not base:
        return None
    ratios.sort()
    return stat(numerator) / base, percentile(ratios, 2.5), percentile(ratios, 97.5)


def fmt_interval(interval: tuple[float, float, float] | None,
                 fmt: Callable[[float | None], str]) -> str:
    """``"12.3 (11.0–14.1)"``; "not measured" without an interval."""
    if interval is None:
        return fmt(None)
    value, low, high = interval
    return f"{fmt(value)} ({fmt(low)}–{fmt(high)})"
