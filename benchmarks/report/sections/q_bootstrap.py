"""Bootstrap 95% intervals for the question sections' medians and ratios.

A percentile bootstrap with a fixed seed, so a report regenerated from the
same results is byte for byte the same.  Kept here until the report's
statistics module offers one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from ...stats import median, percentile
from ..formatting import fmt

RESAMPLES = 1000
SEED = 20260101

Interval = tuple[float, float]


def _resample(values: Sequence[float], rng: random.Random) -> list[float]:
    return rng.choices(values, k=len(values))


def interval(values: Sequence[float], stat: Callable[[Sequence[float]], float] = median,
             resamples: int = RESAMPLES) -> Interval | None:
    """The 95% interval of ``stat(values)``; None for fewer than two values."""
    if len(values) < 2:
        return None
    rng = random.Random(SEED)
    estimates = [stat(_resample(values, rng)) for _ in range(resamples)]
    return percentile(estimates, 2.5), percentile(estimates, 97.5)


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float],
                   stat: Callable[[Sequence[float]], float] = median,
                   resamples: int = RESAMPLES) -> Interval | None:
    """The 95% interval of ``stat(numerator) / stat(denominator)``, each resampled apart."""
    if len(numerator) < 2 or len(denominator) < 2:
        return None
    rng = random.Random(SEED)
    estimates = []
    for _ in range(resamples):
        below = stat(_resample(denominator, rng))
        if below > 0:
            estimates.append(stat(_resample(numerator, rng)) / below)
    if not estimates:
        return None
    return percentile(estimates, 2.5), percentile(estimates, 97.5)


def with_interval(value: float | None, bounds: Interval | None,
                  show: Callable[[float | None], str] = fmt, scale: float = 1.0) -> str:
    """``"1.23 [1.10, 1.40]"``; the value alone when there is no interval."""
    if value is None:
        return show(None)
    text = show(value * scale)
    if bounds is None:
        return text
    return f"{text} [{show(bounds[0] * scale)}, {show(bounds[1] * scale)}]"
