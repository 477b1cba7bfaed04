"""The results document as the sections read it: samples grouped into summarised cells.

:class:`Measurements` wraps the dict the runner wrote (see
:mod:`session_proxy_bench.runner`) once, rounds RTTs so cells line up, and answers
the sections' questions (the p50 of one cell, the scales measured for an
operation, one throughput run) with ``None`` for anything not measured.
It computes with :mod:`session_proxy_bench.stats` and produces numbers only; turning
them into text is the sections' job.  Intervals (:meth:`Measurements.interval`,
:meth:`Measurements.ratio_interval`) are bootstraps of each cell's samples,
computed once per cell and statistic and kept, so every section quoting the
same cell quotes the same interval.  The security and reliability sections
read their own entries of the results dict directly and do not need it.
"""

from __future__ import annotations

from typing import Any

from ..stats import (
    Interval,
    bootstrap,
    fast_mean,
    fast_median,
    geometric_mean,
    group,
    median,
    nearest,
    percentile_interval,
    ratio,
    ratio_replicates,
    repetition_strata,
    select,
    summarize,
)
from .terms import ALL_MODES, MODES, REFERENCE_SCALE, SCALED_OPERATIONS

CELL_KEYS = ("operation", "mode", "rtt_ms", "tasks_per_dag")
#: Statistic name -> (summary field, sample field, function over a resample).
STATISTICS = {
    "p50": ("p50", "latency_s", fast_median),
    "mean": ("mean", "latency_s", fast_mean),
    "txn_s": ("txn_s", "txn_s", fast_mean),
    "server_s": ("server_s", "server_s", fast_mean),
}


class Measurements:
    """The results document, grouped into cells with their summaries."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.config: dict[str, Any] = results.get("config") or {}
        self.environment: dict[str, Any] = results.get("environment") or {}
        self.samples = [
            dict(s, rtt_ms=round(float(s["rtt_ms"]), 6))
            for s in results.get("samples") or []
            if s.get("latency_s") is not None and s.get("rtt_ms") is not None
        ]
        self.floors = [dict(f, rtt_ms=round(float(f["rtt_ms"]), 6))
                       for f in results.get("floors") or [] if f.get("latency_s") is not None]
        self.throughput = [dict(t, rtt_ms=round(float(t["rtt_ms"]), 6))
                           for t in results.get("throughput") or []]
        self.groups = group(self.samples, CELL_KEYS)
        scales: dict[str, set[int]] = {}
        for op, _, _, scale in self.groups:
            scales.setdefault(op, set()).add(scale)
        self._scales = {op: sorted(found) for op, found in scales.items()}
        self.cells = {key: summarize(cell) for key, cell in self.groups.items()}
        self._replicates: dict[tuple, list[float] | None] = {}
        seen = [s["operation"] for s in self.samples]
        self.operations = list(dict.fromkeys([*self.config.get("operations", []), *seen]))
        self.measured = list(dict.fromkeys(seen))
        configured = [round(r * 1000, 6) for r in self.config.get("rtts", [])]
        self.rtts = sorted({*configured, *(s["rtt_ms"] for s in self.samples)})
        self.backend = self.environment.get("backend")
        present = {s["mode"] for s in self.samples} | set(self.config.get("modes") or [])
        present |= set(MODES)
        #: The three designs (reported as "not measured" when absent) and any other mode
        #: of this run (``proxy_best``), in the report's order.
        self.modes = [m for m in ALL_MODES if m in present] + sorted(present - set(ALL_MODES))

    def scales(self, operation: str) -> list[int]:
        """Tasks-per-DAG values measured for ``operation``."""
        return list(self._scales.get(operation, []))

    def reference_scale(self, operation: str) -> int | None:
        """The measured scale closest to :data:`.terms.REFERENCE_SCALE`."""
        scales = self.scales(operation)
        return int(nearest(scales, REFERENCE_SCALE)) if scales else None

    def stat(self, operation: str, mode: str, rtt: float, scale: int | None) -> dict | None:
        """The summary of one cell, or None when it was not measured."""
        return self.cells.get((operation, mode, rtt, scale))

    def value(self, field: str, operation: str, mode: str, rtt: float,
              scale: int | None) -> float | None:
        """One summary field of one cell, or None."""
        summary = self.stat(operation, mode, rtt, scale)
        return None if summary is None else summary.get(field)

    def p50(self, operation: str, mode: str, rtt: float, scale: int | None) -> float | None:
        """The p50 latency in seconds of one cell."""
        return self.value("p50", operation, mode, rtt, scale)

    def modes_of(self, operation: str) -> list[str]:
        """The modes ``operation`` was measured in."""
        return [m for m in self.modes
                if any(key[0] == operation and key[1] == m for key in self.cells)]

    def replicates(self, statistic: str, operation: str, mode: str, rtt: float,
                   scale: int | None) -> list[float] | None:
        """Bootstrap replicates of one cell's statistic; None without two samples."""
        key = (statistic, operation, mode, rtt, scale)
        if key not in self._replicates:
            _, field, function = STATISTICS[statistic]
            strata = repetition_strata(self.groups.get((operation, mode, rtt, scale), []), field)
            enough = sum(len(s) for s in strata) >= 2
            self._replicates[key] = (bootstrap(strata, function, key="|".join(map(str, key)))
                                     if enough else None)
        return self._replicates[key]

    def interval(self, statistic: str, operation: str, mode: str, rtt: float,
                 scale: int | None) -> Interval | None:
        """One cell's statistic (``p50``, ``mean``, ``txn_s``, ``server_s``) with its
        95% interval; None when not measured."""
        estimate = self.value(STATISTICS[statistic][0], operation, mode, rtt, scale)
        if estimate is None:
            return None
        replicates = self.replicates(statistic, operation, mode, rtt, scale)
        return percentile_interval(replicates, estimate) if replicates else Interval(estimate)

    def ratio_interval(self, operation: str, numerator: str, denominator: str, rtt: float,
                       scale: int | None, statistic: str = "p50") -> Interval | None:
        """``numerator ÷ denominator`` of one statistic in one cell, with its interval."""
        field = STATISTICS[statistic][0]
        estimate = ratio(self.value(field, operation, numerator, rtt, scale),
                         self.value(field, operation, denominator, rtt, scale))
        if estimate is None:
            return None
        top = self.replicates(statistic, operation, numerator, rtt, scale)
        bottom = self.replicates(statistic, operation, denominator, rtt, scale)
        if not top or not bottom:
            return Interval(estimate)
        return percentile_interval(ratio_replicates(top, bottom), estimate)

    def floor_interval(self, floor: str, rtt: float) -> Interval | None:
        """The p50 of one floor at one RTT with its interval; None when not measured."""
        rows = select(self.floors, floor=floor, rtt_ms=rtt)
        strata = repetition_strata(rows)
        values = [v for stratum in strata for v in stratum]
        if not values:
            return None
        estimate = median(values)
        if len(values) < 2:
            return Interval(estimate)
        replicates = bootstrap(strata, fast_median, key=f"floor|{floor}|{rtt}")
        return percentile_interval(replicates, estimate)

    def floor_ratio(self, numerator: str, denominator: str, rtt: float) -> Interval | None:
        """p50 of one floor ÷ p50 of another at one RTT, with its interval."""
        top, bottom = self.floor_interval(numerator, rtt), self.floor_interval(denominator, rtt)
        if top is None or bottom is None or not bottom.estimate:
            return None
        estimate = top.estimate / bottom.estimate
        if not (top.has_interval and bottom.has_interval):
            return Interval(estimate)
        replicates = ratio_replicates(
            *(bootstrap(repetition_strata(select(self.floors, floor=f, rtt_ms=rtt)),
                        fast_median, key=f"floor|{f}|{rtt}") for f in (numerator, denominator)))
        return percentile_interval(replicates, estimate)

    def _throughput_values(self, mode: str, rtt: float, clients: int) -> list[float]:
        return [r["throughput"] for r in select(self.throughput, mode=mode, rtt_ms=rtt,
                                                clients=clients)
                if r.get("throughput") is not None]

    def _throughput_replicates(self, mode: str, rtt: float, clients: int) -> list[float]:
        return bootstrap([self._throughput_values(mode, rtt, clients)], fast_mean,
                         key=f"throughput|{mode}|{rtt}|{clients}")

    def throughput_interval(self, mode: str, rtt: float, clients: int) -> Interval | None:
        """Mean calls per second of the runs of one (mode, RTT, clients); an interval
        over the runs when the cell was run more than once (repetitions)."""
        runs = self._throughput_values(mode, rtt, clients)
        if not runs:
            return None
        estimate = fast_mean(list(runs))
        if len(runs) < 2:
            return Interval(estimate)
        return percentile_interval(self._throughput_replicates(mode, rtt, clients), estimate)

    def throughput_ratio(self, numerator: str, denominator: str, rtt: float,
                         clients: int) -> Interval | None:
        """Mean throughput of one mode ÷ another's, with an interval when runs were repeated."""
        top = self.throughput_interval(numerator, rtt, clients)
        bottom = self.throughput_interval(denominator, rtt, clients)
        if top is None or bottom is None or not bottom.estimate:
            return None
        estimate = top.estimate / bottom.estimate
        if not (top.has_interval and bottom.has_interval):
            return Interval(estimate)
        return percentile_interval(ratio_replicates(
            self._throughput_replicates(numerator, rtt, clients),
            self._throughput_replicates(denominator, rtt, clients)), estimate)

    def family_ratio(self, operations: list[str], numerator: str, denominator: str,
                     rtt: float) -> tuple[Interval, list[str]] | None:
        """The geometric mean over ``operations`` (each at its reference scale) of
        ``numerator ÷ denominator`` p50, with its interval, and the operations used."""
        used, estimates, columns = [], [], []
        for op in operations:
            scale = self.reference_scale(op)
            cell = self.ratio_interval(op, numerator, denominator, rtt, scale)
            if cell is None or cell.estimate <= 0:
                continue
            used.append(op)
            estimates.append(cell.estimate)
            top = self.replicates("p50", op, numerator, rtt, scale)
            bottom = self.replicates("p50", op, denominator, rtt, scale)
            columns.append(ratio_replicates(top, bottom) if top and bottom else None)
        if not used:
            return None
        estimate = geometric_mean(estimates)
        if any(c is None or len(c) != len(columns[0]) or min(c) <= 0 for c in columns):
            return Interval(estimate), used
        replicates = [geometric_mean(row) for row in zip(*columns, strict=True)]
        return percentile_interval(replicates, estimate), used

    def label(self, operation: str, scale: int | None) -> str:
        """``mini_scheduler (100 tasks/DAG)`` for scaled operations, else the name."""
        scaled = operation in SCALED_OPERATIONS or len(self.scales(operation)) > 1
        if scale is not None and scaled:
            return f"{operation} ({scale} tasks/DAG)"
        return operation

    @property
    def throughput_rtts(self) -> list[float]:
        """RTTs of the throughput runs."""
        return sorted({t["rtt_ms"] for t in self.throughput})

    @property
    def client_counts(self) -> list[int]:
        """Concurrent client counts of the throughput runs."""
        return sorted({t["clients"] for t in self.throughput})

    def throughput_run(self, mode: str, rtt: float, clients: int) -> dict | None:
        """One throughput run, or None."""
        runs = select(self.throughput, mode=mode, rtt_ms=rtt, clients=clients)
        return runs[0] if runs else None


def p50_latency(rows: list[dict]) -> float | None:
    """The median ``latency_s`` of measured rows, or None when there are none."""
    values = [r["latency_s"] for r in rows if r.get("latency_s") is not None]
    return median(values) if values else None


def http_bytes(summary: dict | None) -> float | None:
    """Mean request plus response bytes of one cell's summary, or None."""
    if summary is None:
        return None
    return (summary["request_bytes"] or 0) + (summary["response_bytes"] or 0)
