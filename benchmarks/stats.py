"""Statistics over benchmark samples: percentiles, grouping, fits, bootstrap intervals.

Everything the report states is computed here from raw samples, so it can be
unit-tested on synthetic data.

Confidence intervals are percentile bootstraps (:func:`bootstrap`): each cell's
samples are resampled with replacement, independently of every other cell,
and within their ``repetition`` when samples carry one (a stratified
bootstrap: each repetition keeps its own sample count, so a slow repetition
cannot vanish from a resample).  The draws come from SHAKE-256 of a fixed
seed and the cell's own key, so the same results file gives the same
intervals on any machine and Python, in any order of evaluation.  Pure
Python on purpose: the report must regenerate byte for byte, and neither
numpy's generators nor most of :mod:`random`'s methods promise the same
stream across versions; the draws are turned into indices and gathered in C
(``bytes.translate``, ``map``), which keeps a 1000-resample bootstrap of a
75-sample cell at a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: Seed of every bootstrap (combined with the cell's key).
BOOTSTRAP_SEED = 20261130
#: Resamples per bootstrap.
BOOTSTRAP_RESAMPLES = 1000
#: Coverage of the intervals.
CONFIDENCE = 0.95


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


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval.

    ``low`` and ``high`` are None when the estimate rests on too few samples
    for an interval (a cell with one sample).
    """

    estimate: float
    low: float | None = None
    high: float | None = None

    @property
    def has_interval(self) -> bool:
        """Whether the interval could be computed."""
        return self.low is not None and self.high is not None

    def excludes(self, value: float) -> bool:
        """Whether ``value`` lies outside the interval (False without an interval)."""
        return self.has_interval and not (self.low <= value <= self.high)  # type: ignore[operator]


def repetition_strata(samples: Sequence[dict], field: str = "latency_s") -> list[list[float]]:
    """``field`` of the samples, one list per ``repetition`` tag (one list if untagged).

    Samples without the field (None) are left out; strata come in the order
    of their tags so the grouping never depends on the order of the samples.
    """
    strata: dict[Any, list[float]] = {}
    for sample in samples:
        value = sample.get(field)
        if value is not None:
            strata.setdefault(sample.get("repetition"), []).append(float(value))
    return [strata[key] for key in sorted(strata, key=lambda tag: (tag is None, str(tag)))]


def _median_sorted(ordered: list[float]) -> float:
    n = len(ordered)
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def fast_median(values: list[float]) -> float:
    """The median (the same number as ``percentile(values, 50)``), sorting in place."""
    values.sort()
    return _median_sorted(values)


def fast_mean(values: list[float]) -> float:
    """The arithmetic mean (summed left to right, so the same list gives the same bits)."""
    return sum(values) / len(values)


def _uniform_indices(key: str, n: int, count: int) -> bytes:
    """``count`` independent uniform draws from ``range(n)`` (``n`` <= 256), one per byte.

    The bytes come from SHAKE-256 of ``key`` (a standard function: the same
    key gives the same draws on any Python); bytes at or above the largest
    multiple of ``n`` are rejected so every index is equally likely.  The
    rejection and the reduction run inside ``bytes.translate``, in C.
    """
    limit = 256 - 256 % n
    table = bytes(value % n for value in range(256))
    rejected = bytes(range(limit, 256))
    out = bytearray()
    block = 0
    while len(out) < count:
        missing = count - len(out)
        raw = hashlib.shake_256(f"{key}/{block}".encode()).digest(missing * 256 // limit + 64)
        out += raw.translate(table, rejected)
        block += 1
    return bytes(out[:count])


def _drawn(values: list[float], key: str, count: int) -> list[float]:
    """``count`` values drawn with replacement from ``values``, uniformly and independently."""
    n = len(values)
    get = values.__getitem__
    if n <= 256:
        return list(map(get, _uniform_indices(key, n, count)))
    # Larger cells: two bytes per draw, rejection as above.
    limit = 65536 - 65536 % n
    pairs = hashlib.shake_256(key.encode()).digest(4 * count + 4096)
    draws = [v % n for v in memoryview(pairs).cast("H") if v < limit]
    if len(draws) < count:
        raise ValueError("bootstrap draws exhausted")  # 1 - limit/65536 < 1%: never in practice
    return list(map(get, draws[:count]))


def bootstrap(
    strata: Sequence[Sequence[float]],
    statistic: Callable[[list[float]], float] = fast_median,
    *,
    key: str,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[float]:
    """``resamples`` values of ``statistic`` over resamples of ``strata``.

    Each resample draws, with replacement, as many values from each stratum
    as it holds, and pools them.  ``key`` names the cell and, with
    :data:`BOOTSTRAP_SEED`, seeds the draws: two cells never share their
    draws, and a cell's draws do not depend on which cell was bootstrapped
    before it.  ``statistic`` may reorder the list it is given.
    """
    strata = [list(s) for s in strata if s]
    if not strata:
        raise ValueError("bootstrap of no values")
    drawn = [_drawn(stratum, f"{BOOTSTRAP_SEED}/{key}/{index}", len(stratum) * resamples)
             for index, stratum in enumerate(strata)]
    sizes = [len(stratum) for stratum in strata]
    if len(strata) == 1:
        n, values = sizes[0], drawn[0]
        return [statistic(values[b * n:(b + 1) * n]) for b in range(resamples)]
    replicates = []
    for b in range(resamples):
        pooled: list[float] = []
        for n, values in zip(sizes, drawn, strict=True):
            pooled += values[b * n:(b + 1) * n]
        replicates.append(statistic(pooled))
    return replicates


def percentile_interval(replicates: Sequence[float], estimate: float,
                        confidence: float = CONFIDENCE) -> Interval:
    """The percentile interval of bootstrap ``replicates`` around ``estimate``."""
    if not replicates:
        return Interval(estimate)
    tail = (1 - confidence) / 2 * 100
    return Interval(estimate, percentile(replicates, tail), percentile(replicates, 100 - tail))


def ratio_replicates(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Replicate-wise ratios of two independent bootstraps (pairs with a zero are dropped)."""
    return [a / b for a, b in zip(numerators, denominators, strict=True) if b]


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive values."""
    if not values or any(v <= 0 for v in values):
        raise ValueError("geometric mean needs positive values")
    return math.exp(math.fsum(math.log(v) for v in values) / len(values))


@dataclasses.dataclass(frozen=True)
class LinearFit:
    """A least-squares line with its quality."""

    intercept: float
    slope: float
    r_squared: float
    #: Largest absolute residual, in the unit of y.
    max_residual: float
    points: int

    def at(self, x: float) -> float:
        """The fitted y at ``x``."""
        return self.intercept + self.slope * x


def fit_line(points: Sequence[tuple[float, float]]) -> LinearFit:
    """The least-squares line through ``points`` with R² and the largest residual."""
    intercept, slope = linear_fit(points)
    ys = [y for _, y in points]
    y_mean = mean(ys)
    residuals = [y - (intercept + slope * x) for x, y in points]
    total = sum((y - y_mean) ** 2 for y in ys)
    unexplained = sum(r * r for r in residuals)
    r_squared = 1.0 - unexplained / total if total else 1.0
    return LinearFit(intercept, slope, r_squared, max(abs(r) for r in residuals), len(points))
