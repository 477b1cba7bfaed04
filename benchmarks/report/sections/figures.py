"""The report's "Charts" section: latency against RTT and scale, txn time, throughput, bytes.

Each chart is an SVG string from :mod:`session_proxy_bench.charts` wrapped in a
:class:`~session_proxy_bench.report.document.Figure`; a chart whose data was not
measured becomes a "not measured" paragraph instead of an empty plot.  Charts
against RTT draw each p50 with its 95% bootstrap interval, and leave out an
in-process (SQLite) direct mode, which has no network for an RTT to act on;
their captions say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ... import charts
from ..document import Block, Figure, Heading, Paragraph
from ..formatting import NOT_MEASURED, fmt_ms, fmt_rtt, listing, to_ms
from ..measurements import Measurements, http_bytes
from ..terms import HEADLINE, KEY_OPERATIONS, MODE_COLORS, SCALED_OPERATIONS

Points = list[tuple[float, float | None]]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _mode_series(points: Callable[[str], Points],
                 modes: Sequence[str]) -> dict[str, Points]:
    return {mode: [(x, y) for x, y in points(mode) if y is not None] for mode in modes}


def _rtt_modes(m: Measurements) -> list[str]:
    """Modes to draw against RTT: all but an in-process direct mode."""
    return [mode for mode in m.modes if not (mode == "direct" and m.backend == "sqlite")]


def _direct_note(m: Measurements, op: str, scale: int | None) -> str:
    """The caption's sentence on a direct mode left out of an RTT chart."""
    if m.backend != "sqlite" or "direct" not in m.modes:
        return ""
    p50s = [m.p50(op, "direct", rtt, scale) for rtt in m.rtts]
    p50s = [p for p in p50s if p is not None]
    shown = (f" (its p50 was {fmt_ms(min(p50s))}–{fmt_ms(max(p50s))} ms in every cell)"
             if p50s else "")
    return (" Direct mode is not drawn: on SQLite it is a file inside the client process, "
            f"with no network for the injected RTT to act on{shown}.")


def _has_points(series: dict[str, list]) -> bool:
    return any(series.values())


def _latency_vs_rtt(m: Measurements) -> list[Block]:
    blocks: list[Block] = []
    for op in KEY_OPERATIONS:
        scale = m.reference_scale(op)
        if scale is None:
            continue
        modes = _rtt_modes(m)
        series = _mode_series(lambda mode, op=op, scale=scale: [
            (rtt, to_ms(m.p50(op, mode, rtt, scale))) for rtt in m.rtts], modes)
        if not _has_points(series):
            continue
        whiskers = {mode: [(rtt, value.low * 1000, value.high * 1000) for rtt in m.rtts
                           if (value := m.interval("p50", op, mode, rtt, scale)) is not None
                           and value.has_interval] for mode in modes}
        title = f"{m.label(op, scale)}: p50 latency vs RTT"
        svg = charts.line_chart(series, title=title, x_label="injected RTT (ms)",
                                y_label="p50 latency (ms)", colors=MODE_COLORS,
                                intervals=whiskers)
        blocks.append(Figure(_slug(f"latency-rtt-{op}"), title, svg,
                             f"p50 latency of `{op}` per mode against the injected RTT, with "
                             f"95% bootstrap intervals.{_direct_note(m, op, scale)}"))
    missing = [op for op in KEY_OPERATIONS if m.reference_scale(op) is None]
    if missing:
        blocks.append(Paragraph(f"Latency against RTT of {listing(missing)}: {NOT_MEASURED}."))
    return blocks


def _latency_vs_scale(m: Measurements) -> list[Block]:
    blocks: list[Block] = []
    for op in SCALED_OPERATIONS:
        scales = m.scales(op)
        if len(scales) < 2:
            blocks.append(Paragraph(
                f"Latency of `{op}` against tasks per DAG: {NOT_MEASURED} "
                f"({len(scales)} scale{'s' if len(scales) != 1 else ''} measured)."))
            continue
        rtt = max(s["rtt_ms"] for s in m.samples if s["operation"] == op)
        series = _mode_series(lambda mode, op=op, rtt=rtt, scales=scales: [
            (scale, to_ms(m.p50(op, mode, rtt, scale))) for scale in scales], m.modes)
        title = f"{op}: p50 latency vs tasks per DAG at {fmt_rtt(rtt)} ms RTT"
        svg = charts.line_chart(series, title=title, x_label="tasks per DAG",
                                y_label="p50 latency (ms)", colors=MODE_COLORS)
        blocks.append(Figure(_slug(f"latency-scale-{op}"), title, svg,
                             f"p50 latency of `{op}` per mode against the number of tasks per "
                             f"DAG, at the largest RTT measured ({fmt_rtt(rtt)} ms)."))
    return blocks


def _transaction_chart(m: Measurements) -> list[Block]:
    scale = m.reference_scale(HEADLINE)
    if scale is None:
        return [Paragraph(f"Transaction-open time of `{HEADLINE}`: {NOT_MEASURED}.")]
    modes = _rtt_modes(m)
    series = _mode_series(lambda mode: [
        (rtt, to_ms(m.value("txn_s", HEADLINE, mode, rtt, scale))) for rtt in m.rtts], modes)
    if not _has_points(series):
        return [Paragraph(f"Transaction-open time of `{HEADLINE}`: {NOT_MEASURED}.")]
    title = f"{m.label(HEADLINE, scale)}: transaction open time vs RTT"
    svg = charts.line_chart(series, title=title, x_label="injected RTT (ms)",
                            y_label="transaction open (ms, mean)", colors=MODE_COLORS)
    return [Figure(_slug(f"txn-rtt-{HEADLINE}"), title, svg,
                   f"How long `{HEADLINE}` keeps its database transaction (and its locks) "
                   "open, per mode, against the injected RTT."
                   + _direct_note(m, HEADLINE, scale).replace("its p50 was", "its latency p50 "
                                                              "was"))]


def _throughput_points(m: Measurements, rtt: float, field: str) -> Callable[[str], Points]:
    def points(mode: str) -> Points:
        values: Points = []
        for clients in m.client_counts:
            run = m.throughput_run(mode, rtt, clients)
            value = None if run is None else run.get(field)
            if value is not None and field == "p99_s":
                value *= 1000
            values.append((clients, value))
        return values

    return points


def _throughput_charts(m: Measurements) -> list[Block]:
    if not m.throughput:
        return [Paragraph(f"Throughput charts: {NOT_MEASURED}.")]
    blocks: list[Block] = []
    for rtt in m.throughput_rtts:
        for field, y_label, name in (("throughput", "calls per second", "throughput"),
                                     ("p99_s", "p99 latency (ms)", "p99")):
            title = f"{name.capitalize()} vs concurrent clients at {fmt_rtt(rtt)} ms RTT"
            svg = charts.line_chart(_mode_series(_throughput_points(m, rtt, field), m.modes),
                                    title=title, x_label="concurrent clients", y_label=y_label,
                                    colors=MODE_COLORS)
            blocks.append(Figure(_slug(f"{name}-clients-rtt-{fmt_rtt(rtt)}"), title, svg,
                                 f"{y_label.capitalize()} of the throughput runs per mode "
                                 f"against the number of concurrent clients, at "
                                 f"{fmt_rtt(rtt)} ms RTT."))
    return blocks


def _bytes_chart(m: Measurements) -> list[Block]:
    if not m.rtts or not m.measured:
        return [Paragraph(f"Bytes per operation: {NOT_MEASURED}.")]
    rtt = m.rtts[0]
    categories: list[str] = []
    series: dict[str, list[float | None]] = {mode: [] for mode in m.modes if mode != "direct"}
    for op in m.measured:
        scale = m.reference_scale(op)
        categories.append(m.label(op, scale))
        for mode in series:
            series[mode].append(http_bytes(m.stat(op, mode, rtt, scale)))
    values = [v for vs in series.values() for v in vs if v]
    if not values:
        return [Paragraph(f"Bytes per operation at {fmt_rtt(rtt)} ms RTT: {NOT_MEASURED}.")]
    log_y = max(values) / min(values) > 30
    title = f"HTTP bytes per call at {fmt_rtt(rtt)} ms RTT"
    svg = charts.bar_chart(categories, series, title=title,
                           y_label="request + response bytes" + (" (log)" if log_y else ""),
                           colors=MODE_COLORS, log_y=log_y, width=max(720, 70 * len(categories)))
    return [Figure(f"bytes-rtt-{_slug(fmt_rtt(rtt))}", title, svg,
                   "Request plus response bytes per call of each operation, proxy against "
                   "logical (direct mode sends no HTTP), at the smallest RTT measured"
                   + (", on a logarithmic axis." if log_y else "."))]


def figures_section(m: Measurements) -> list[Block]:
    """The "Charts" heading and its five sub-sections of figures."""
    blocks: list[Block] = [Heading(2, "Charts")]
    if not m.samples and not m.throughput:
        return blocks + [Paragraph(f"No samples: charts {NOT_MEASURED}.")]
    blocks += [Heading(3, "Latency against RTT"), *_latency_vs_rtt(m)]
    blocks += [Heading(3, "Latency against tasks per DAG"), *_latency_vs_scale(m)]
    blocks += [Heading(3, "Transaction open time"), *_transaction_chart(m)]
    blocks += [Heading(3, "Throughput against concurrent clients"), *_throughput_charts(m)]
    blocks += [Heading(3, "Bytes per operation"), *_bytes_chart(m)]
    return blocks
