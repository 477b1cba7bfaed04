"""Statistics over benchmark samples: percentiles, grouping, fits.

Everything the report states is computed here from raw samples, so it can be
unit-tested on synthetic data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean."""
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)


def group(samples: Iterable[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Samples grouped by the values of ``keys``, in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for sample in samples:
        groups.setdefault(tuple(sample.get(k) for k in keys), []).append(sample)
    return groups


def summarize(samples: Sequence[dict]) -> dict[str, Any]:
    """p50/p95/p99 latency and mean counters of one cell's samples."""
    latencies = [s["latency_s"] for s in samples]

    def avg(field: str) -> float | None:
        values = [s[field] for s in samples if s.get(field) is not None]
        return mean(values) if values else None

    return {
        "n": len(samples),
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "mean": mean(latencies),
        "round_trips": avg("round_trips"),
        "request_bytes": avg("request_bytes"),
        "response_bytes": avg("response_bytes"),
        "statements": avg("statements"),
        "server_s": avg("server_s"),
        "txn_s": avg("txn_s"),
    }


def linear_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of ``y = intercept + slope * x``."""
    if len(points) < 2:
        raise ValueError("a line needs at least two points")
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x_mean, y_mean = mean(xs), mean(ys)
    spread = sum((x - x_mean) ** 2 for x in xs)
    if spread == 0:
        raise ValueError("all points share one x")
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / spread
    return y_mean - slope * x_mean, slope


def break_even(
    first: Sequence[tuple[float, float]], second: Sequence[tuple[float, float]]
) -> float | None:
    """The x where the fitted lines of two series cross, if it lies at x >= 0."""
    a1, b1 = linear_fit(first)
    a2, b2 = linear_fit(second)
    if b1 == b2:
        return None
    x = (a2 - a1) / (b1 - b2)
    return x if x >= 0 else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def select(samples: Iterable[dict], **criteria: Any) -> list[dict]:
    """Samples whose fields equal every given criterion."""
    return [s for s in samples if all(s.get(k) == v for k, v in criteria.items())]


def cell(
    samples: Iterable[dict], stat: Callable[[dict[str, Any]], float | None], **criteria: Any
) -> float | None:
    """One statistic of the samples matching ``criteria``, or None if none match."""
    chosen = select(samples, **criteria)
    return stat(summarize(chosen)) if chosen else None


def nearest(values: Iterable[float], target: float) -> float:
    """The value closest to ``target``; on a tie, the smaller one."""
    choices = sorted(values)
    if not choices:
        raise ValueError("nearest of no values")
    return min(choices, key=lambda value: abs(value - target))


def median(values: Sequence[float]) -> float:
    """The 50th percentile."""
    return percentile(values, 50)
