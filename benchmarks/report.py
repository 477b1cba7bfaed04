"""Turn a benchmark results document into ``report.md`` and a self-contained ``report.html``.

Every number in the report is computed here from the results dict the runner
wrote (see :mod:`benchmarks.runner`) with the helpers of
:mod:`benchmarks.stats`; nothing is typed in by hand.  The report is built
once as a list of blocks (headings, paragraphs, tables, figures) and rendered
twice, so both formats carry the same content.  Charts are inline SVG from
:mod:`benchmarks.charts`: embedded in the HTML and written next to the
markdown as ``chart-*.svg`` files.  Cells, modes or operations missing from
the results are reported as "not measured".
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import charts
from .stats import break_even, group, linear_fit, median, nearest, ratio, select, summarize

MODES = ("direct", "proxy", "logical")
MODE_COLORS = {"direct": "#009E73", "proxy": "#D55E00", "logical": "#0072B2"}
#: How running text names each mode.
MODE_NAMES = {"direct": "direct connection", "proxy": "proxy", "logical": "logical API"}
NOT_MEASURED = "not measured"
DASH = "–"
#: Operations charted against RTT, at the scale closest to REFERENCE_SCALE.
KEY_OPERATIONS = ("mini_scheduler", "get_dag_run", "heartbeat", "create_dag_run")
#: Operations whose work grows with tasks per DAG.
SCALED_OPERATIONS = ("mini_scheduler", "create_dag_run", "clear_task_instances")
#: Operations of the workload that change rows.
WRITE_OPERATIONS = ("set_variable", "xcom_push", "heartbeat", "start_task", "finish_task",
                    "mini_scheduler", "create_dag_run", "clear_task_instances")
HEADLINE = "mini_scheduler"
REFERENCE_SCALE = 100
#: Scale the seed thread worried about ("a few hundred rows").
FEW_HUNDRED = 200
CELL_KEYS = ("operation", "mode", "rtt_ms", "tasks_per_dag")

try:  # descriptive only: which light operations the throughput runs mix
    from .scenarios import THROUGHPUT_MIX
except ImportError:  # pragma: no cover - the runner's modules are being edited
    THROUGHPUT_MIX = ()


# --- document blocks --------------------------------------------------------------------


@dataclasses.dataclass
class Heading:
    """A section heading."""

    level: int
    text: str


@dataclasses.dataclass
class Paragraph:
    """Running text; may use ``code`` and **bold**."""

    text: str


@dataclasses.dataclass
class Bullets:
    """An unordered list."""

    items: list[str]


@dataclasses.dataclass
class Table:
    """A table of already formatted cells."""

    headers: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Code:
    """A preformatted block."""

    text: str


@dataclasses.dataclass
class Figure:
    """An SVG chart with a caption; written as ``chart-<name>.svg`` next to the markdown."""

    name: str
    title: str
    svg: str
    caption: str

    @property
    def filename(self) -> str:
        """The chart's file name next to report.md."""
        return f"chart-{self.name}.svg"


Block = Heading | Paragraph | Bullets | Table | Code | Figure


# --- formatting -------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    """A number with about three significant digits; None is "not measured"."""
    if value is None:
        return NOT_MEASURED
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_ms(seconds: float | None) -> str:
    """Seconds shown as milliseconds."""
    return fmt(None if seconds is None else seconds * 1000)


def fmt_ratio(value: float | None) -> str:
    """A ratio such as ``3.25×``."""
    if value is None:
        return NOT_MEASURED
    if value >= 100:
        return f"{value:.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    return f"{value:.2f}×"


def fmt_count(value: float | None) -> str:
    """A mean count: whole numbers without decimals."""
    if value is None:
        return DASH
    if abs(value - round(value)) < 1e-9:
        return str(round(value))
    return f"{value:.1f}"


def fmt_bytes(value: float | None) -> str:
    """A mean byte count, rounded to whole bytes."""
    return DASH if value is None else f"{value:.0f}"


def plural(count: Any, word: str) -> str:
    """``"1 call"``, ``"3 calls"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def fmt_rtt(rtt_ms: float) -> str:
    """An RTT in milliseconds, without trailing zeros."""
    return f"{rtt_ms:g}"


def fmt_percent(value: float | None) -> str:
    """A share as a percentage."""
    return NOT_MEASURED if value is None else f"{value * 100:.0f}%"


def compared(value: float | None, slower: str = "slower", faster: str = "faster") -> str:
    """``"2.00× slower"`` for a ratio above 1, ``"1.50× faster"`` below."""
    if value is None:
        return NOT_MEASURED
    if abs(value - 1) < 0.005:
        return f"as fast (ratio {fmt_ratio(value)})"
    if value > 1:
        return f"{fmt_ratio(value)} {slower}"
    return f"{fmt_ratio(1 / value)} {faster}"


def hide_passwords(text: str) -> str:
    """Mask the password of any URL in ``text``."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def _listing(items: Iterable[Any]) -> str:
    return ", ".join(f"`{item}`" for item in items) or "none"


# --- the measurements -------------------------------------------------------------------


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
        self.cells = {key: summarize(cell) for key, cell in group(self.samples, CELL_KEYS).items()}
        seen = [s["operation"] for s in self.samples]
        self.operations = list(dict.fromkeys([*self.config.get("operations", []), *seen]))
        self.measured = list(dict.fromkeys(seen))
        configured = [round(r * 1000, 6) for r in self.config.get("rtts", [])]
        self.rtts = sorted({*configured, *(s["rtt_ms"] for s in self.samples)})
        self.backend = self.environment.get("backend")

    def scales(self, operation: str) -> list[int]:
        """Tasks-per-DAG values measured for ``operation``."""
        return sorted({s["tasks_per_dag"] for s in self.samples if s["operation"] == operation})

    def reference_scale(self, operation: str) -> int | None:
        """The measured scale closest to :data:`REFERENCE_SCALE`."""
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
        return [m for m in MODES if any(key[0] == operation and key[1] == m for key in self.cells)]

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


# --- section 1: title, method, environment ---------------------------------------------


def _duration(results: dict[str, Any]) -> str:
    try:
        started = datetime.datetime.fromisoformat(results["started"])
        finished = datetime.datetime.fromisoformat(results["finished"])
    except (KeyError, TypeError, ValueError):
        return "not recorded"
    return f"{(finished - started).total_seconds():.0f} s"


def _method(m: Measurements) -> list[Block]:
    c = m.config
    sqlite = m.backend == "sqlite"
    mix = _listing(THROUGHPUT_MIX) if THROUGHPUT_MIX else "a mix of light operations"
    return [
        Heading(2, "Method"),
        Paragraph(
            "Each workload operation is written once, as plain SQLAlchemy code taking a "
            "`session` (`benchmarks/workload/operations.py`), and the very same function "
            "ran in three modes:"),
        Bullets([
            "**direct**: the application's code on a real engine and session. "
            + ("On SQLite the database is a file inside the client process, so direct mode "
               "has no network at all and no injected latency. " if sqlite else
               "The direct connection to the database goes through the same latency relay "
               "as the HTTP modes. ")
            + "This is the baseline without isolation.",
            "**proxy**: the same code on a `ProxySession`: every statement (ORM queries, "
            "loads, flush INSERT/UPDATE/DELETE, Core SQL) is shipped over HTTP to the "
            "session-proxy server, which executes it in a server-held transaction on its "
            "pooled connection. This is the design AIP-44 rejected without measuring it.",
            "**logical**: one HTTP call per operation; the server runs the same function on "
            "a real session in one transaction and sends the result back. This is the "
            "design AIP-44 shipped (Airflow 2.7-2.10).",
        ]),
        Paragraph(
            "Latency is injected by a TCP relay on loopback between client and server"
            + ("" if sqlite else " (and between the direct-mode client and the database)")
            + ": it delays each direction by RTT/2, so every request/response exchange costs "
            "one RTT on top of loopback, while bytes in flight keep flowing (no bandwidth "
            "limit). RTT 0 means no relay."),
        Paragraph(
            f"For each operation, mode, RTT and tasks-per-DAG scale the runner made "
            f"{plural(c.get('warmup', NOT_MEASURED), 'unrecorded warm-up call')}, then "
            f"recorded {plural(c.get('samples', NOT_MEASURED), 'sample')}. Operations that "
            "change rows are preceded by an untimed prepare step on a direct connection that "
            "puts those rows back into their seeded state, so every sample does the same work "
            "in every mode. "
            f"The floors are {c.get('floor_samples', NOT_MEASURED)} samples each of a direct "
            "`SELECT 1` and a bare HTTP echo at each RTT. Throughput runs let N client threads "
            f"loop over {mix} for {c.get('throughput_seconds', NOT_MEASURED)} s per mode, "
            "RTT and client count."),
        Paragraph("Counters recorded with every sample:"),
        Bullets([
            "**round trips**: HTTP requests (none in direct mode);",
            "**statements**: SQL statements executed against the database;",
            "**bytes**: HTTP request plus response body bytes (direct mode's database wire "
            "traffic is not counted);",
            "**server time**: time the server spent handling the sample's requests;",
            "**transaction open**: time the database transaction stayed open, measured by "
            "the server in proxy and logical modes and from BEGIN to COMMIT on the client in "
            "direct mode. Locks taken by the transaction are held at least this long.",
        ]),
    ]


def _environment(m: Measurements) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Environment")]
    env = m.environment
    if env:
        blocks.append(Table(["item", "value"], [[str(k), str(v)] for k, v in env.items()]))
    else:
        blocks.append(Paragraph(f"Environment: {NOT_MEASURED} (not recorded in the results)."))
    command = m.results.get("command") or []
    blocks.append(Paragraph("Command line:"))
    blocks.append(Code(hide_passwords(shlex.join(str(a) for a in command)) if command
                       else "not recorded"))
    c = m.config
    axes = [
        ("database", "db", lambda v: hide_passwords(str(v))),
        ("modes", "modes", lambda v: ", ".join(v)),
        ("operations", "operations", lambda v: ", ".join(v)),
        ("RTTs (ms)", "rtts", lambda v: ", ".join(fmt_rtt(r * 1000) for r in v)),
        ("tasks per DAG", "scales", lambda v: ", ".join(str(x) for x in v)),
        ("concurrent clients", "clients", lambda v: ", ".join(str(x) for x in v)),
        ("samples per cell", "samples", str),
        ("warm-up calls per cell", "warmup", str),
        ("floor samples per RTT", "floor_samples", str),
        ("seconds per throughput run", "throughput_seconds", str),
        ("DAGs", "dags", str),
        ("runs per DAG", "runs_per_dag", str),
    ]
    rows = [[name, render(c[key])] for name, key, render in axes if c.get(key) is not None]
    blocks.append(Paragraph("Configuration axes:"))
    blocks.append(Table(["axis", "value"], rows) if rows else Paragraph(NOT_MEASURED))
    return blocks


# --- sections 2 and 3: floors, per-operation tables, throughput --------------------------


def p50_latency(rows: list[dict]) -> float | None:
    """The median ``latency_s`` of measured rows, or None when there are none."""
    values = [r["latency_s"] for r in rows if r.get("latency_s") is not None]
    return median(values) if values else None


def _floors(m: Measurements) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Floors"),
        Paragraph("The cheapest exchange on each path: a direct `SELECT 1` (what every "
                  "statement costs at least in direct mode), a bare HTTP echo to the "
                  "server (what every round trip costs at least in proxy and logical mode) "
                  "and a `SELECT 1` through the proxy (one round trip carrying one "
                  "statement), sampled interleaved."),
    ]
    rtts = sorted({f["rtt_ms"] for f in m.floors})
    if not rtts:
        blocks.append(Paragraph(f"Floors: {NOT_MEASURED}."))
        return blocks
    rows, notes = [], []
    for rtt in rtts:
        row, p50s = [fmt_rtt(rtt)], {}
        for floor in ("db_select_1", "http_echo", "proxy_select_1"):
            rows_of_floor = select(m.floors, floor=floor, rtt_ms=rtt)
            p50s[floor] = p50_latency(rows_of_floor)
            row += [fmt_ms(p50s[floor]), str(len(rows_of_floor))]
        rows.append(row)
        echo, select_1 = p50s["http_echo"], p50s["db_select_1"]
        if echo is not None:
            note = f"at {fmt_rtt(rtt)} ms RTT one HTTP round trip costs {fmt_ms(echo)} ms"
            if rtt:
                note += f", {fmt_ms(max(echo - rtt / 1000, 0.0))} ms above the injected RTT"
            if select_1:
                note += f", {fmt_ratio(echo / select_1)} a direct `SELECT 1`"
            notes.append(note)
    blocks.append(Table(["RTT (ms)", "direct SELECT 1 p50 (ms)", "n", "HTTP echo p50 (ms)", "n",
                         "proxy SELECT 1 p50 (ms)", "n"], rows))
    if notes:
        blocks.append(Paragraph("Per request: " + "; ".join(notes) + ". Every proxy round trip "
                                "and every logical call pays at least this."))
    return blocks


OPERATION_HEADERS = ["mode", "RTT (ms)", "tasks/DAG", "n", "p50 (ms)", "p95 (ms)", "p99 (ms)",
                     "round trips", "statements", "bytes (req+resp)", "server (ms)",
                     "txn open (ms)"]


def _operation_row(mode: str, rtt: float, scale: int, s: dict | None) -> list[str]:
    head = [mode, fmt_rtt(rtt), str(scale)]
    if s is None:
        return head + [NOT_MEASURED] + [DASH] * (len(OPERATION_HEADERS) - 4)
    direct = mode == "direct"
    size = None if direct else (s["request_bytes"] or 0) + (s["response_bytes"] or 0)
    return head + [
        str(s["n"]), fmt_ms(s["p50"]), fmt_ms(s["p95"]), fmt_ms(s["p99"]),
        fmt_count(s["round_trips"]), fmt_count(s["statements"]),
        fmt_bytes(size),
        DASH if s["server_s"] is None else fmt_ms(s["server_s"]),
        DASH if s["txn_s"] is None else fmt_ms(s["txn_s"]),
    ]


def _operations(m: Measurements) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Results per operation"),
        Paragraph("Latency percentiles are over the recorded samples of each cell; counters "
                  "are means per call. A dash means the counter does not apply (direct mode "
                  "makes no HTTP requests)."),
    ]
    if not m.operations:
        blocks.append(Paragraph(f"No operations: {NOT_MEASURED}."))
    for op in m.operations:
        blocks.append(Heading(3, f"`{op}`"))
        scales = m.scales(op)
        if not scales:
            blocks.append(Paragraph(f"`{op}`: {NOT_MEASURED} in any mode."))
            continue
        rows = [_operation_row(mode, rtt, scale, m.stat(op, mode, rtt, scale))
                for mode in MODES for rtt in m.rtts for scale in scales]
        blocks.append(Table(OPERATION_HEADERS, rows))
    return blocks


def _throughput(m: Measurements) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Throughput"),
        Paragraph("Concurrent clients, each looping over the light operation mix; "
                  "operations per second over all clients, latency percentiles over all calls."),
    ]
    if not m.throughput:
        blocks.append(Paragraph(f"Throughput: {NOT_MEASURED}."))
        return blocks
    rows = []
    for rtt in m.throughput_rtts:
        for mode in MODES:
            for clients in m.client_counts:
                run = m.throughput_run(mode, rtt, clients)
                head = [mode, fmt_rtt(rtt), str(clients)]
                if run is None:
                    rows.append(head + [NOT_MEASURED, DASH, DASH, DASH, DASH])
                    continue
                errors = run.get("errors") or {}
                rows.append(head + [
                    str(run.get("operations", DASH)), fmt(run.get("throughput")),
                    fmt_ms(run.get("p50_s")), fmt_ms(run.get("p99_s")),
                    ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0",
                ])
    blocks.append(Table(["mode", "RTT (ms)", "clients", "calls", "calls/s", "p50 (ms)",
                         "p99 (ms)", "errors"], rows))
    return blocks


# --- section 4: charts ------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _mode_series(points: Callable[[str], list[tuple[float, float | None]]],
                 modes: Sequence[str] = MODES) -> dict[str, list[tuple[float, float | None]]]:
    return {mode: [(x, y) for x, y in points(mode) if y is not None] for mode in modes}


def _has_points(series: dict[str, list]) -> bool:
    return any(series.values())


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


def _latency_vs_rtt(m: Measurements) -> list[Block]:
    blocks: list[Block] = []
    for op in KEY_OPERATIONS:
        scale = m.reference_scale(op)
        if scale is None:
            continue
        series = _mode_series(lambda mode, op=op, scale=scale: [
            (rtt, _ms(m.p50(op, mode, rtt, scale))) for rtt in m.rtts])
        if not _has_points(series):
            continue
        title = f"{m.label(op, scale)}: p50 latency vs RTT"
        svg = charts.line_chart(series, title=title, x_label="injected RTT (ms)",
                                y_label="p50 latency (ms)", colors=MODE_COLORS)
        blocks.append(Figure(_slug(f"latency-rtt-{op}"), title, svg,
                             f"p50 latency of `{op}` per mode against the injected RTT."))
    missing = [op for op in KEY_OPERATIONS if m.reference_scale(op) is None]
    if missing:
        blocks.append(Paragraph(f"Latency against RTT of {_listing(missing)}: {NOT_MEASURED}."))
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
            (scale, _ms(m.p50(op, mode, rtt, scale))) for scale in scales])
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
    series = _mode_series(lambda mode: [
        (rtt, _ms(m.value("txn_s", HEADLINE, mode, rtt, scale))) for rtt in m.rtts])
    if not _has_points(series):
        return [Paragraph(f"Transaction-open time of `{HEADLINE}`: {NOT_MEASURED}.")]
    title = f"{m.label(HEADLINE, scale)}: transaction open time vs RTT"
    svg = charts.line_chart(series, title=title, x_label="injected RTT (ms)",
                            y_label="transaction open (ms, mean)", colors=MODE_COLORS)
    return [Figure(_slug(f"txn-rtt-{HEADLINE}"), title, svg,
                   f"How long `{HEADLINE}` keeps its database transaction (and its locks) "
                   "open, per mode, against the injected RTT.")]


def _throughput_charts(m: Measurements) -> list[Block]:
    if not m.throughput:
        return [Paragraph(f"Throughput charts: {NOT_MEASURED}.")]
    blocks: list[Block] = []
    for rtt in m.throughput_rtts:
        for field, y_label, name in (("throughput", "calls per second", "throughput"),
                                     ("p99_s", "p99 latency (ms)", "p99")):
            def points(mode: str, rtt: float = rtt, field: str = field) -> list:
                values = []
                for clients in m.client_counts:
                    run = m.throughput_run(mode, rtt, clients)
                    value = None if run is None else run.get(field)
                    if value is not None and field == "p99_s":
                        value *= 1000
                    values.append((clients, value))
                return values

            title = f"{name.capitalize()} vs concurrent clients at {fmt_rtt(rtt)} ms RTT"
            svg = charts.line_chart(_mode_series(points), title=title,
                                    x_label="concurrent clients", y_label=y_label,
                                    colors=MODE_COLORS)
            blocks.append(Figure(_slug(f"{name}-clients-rtt-{fmt_rtt(rtt)}"), title, svg,
                                 f"{y_label.capitalize()} of the throughput runs per mode "
                                 f"against the number of concurrent clients, at "
                                 f"{fmt_rtt(rtt)} ms RTT."))
    return blocks


def _bytes(s: dict | None) -> float | None:
    if s is None:
        return None
    return (s["request_bytes"] or 0) + (s["response_bytes"] or 0)


def _bytes_chart(m: Measurements) -> list[Block]:
    if not m.rtts or not m.measured:
        return [Paragraph(f"Bytes per operation: {NOT_MEASURED}.")]
    rtt = m.rtts[0]
    categories, series = [], {"proxy": [], "logical": []}
    for op in m.measured:
        scale = m.reference_scale(op)
        categories.append(m.label(op, scale))
        for mode in series:
            series[mode].append(_bytes(m.stat(op, mode, rtt, scale)))
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


def _charts(m: Measurements) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Charts")]
    if not m.samples and not m.throughput:
        return blocks + [Paragraph(f"No samples: charts {NOT_MEASURED}.")]
    blocks += [Heading(3, "Latency against RTT"), *_latency_vs_rtt(m)]
    blocks += [Heading(3, "Latency against tasks per DAG"), *_latency_vs_scale(m)]
    blocks += [Heading(3, "Transaction open time"), *_transaction_chart(m)]
    blocks += [Heading(3, "Throughput against concurrent clients"), *_throughput_charts(m)]
    blocks += [Heading(3, "Bytes per operation"), *_bytes_chart(m)]
    return blocks


# --- section 5: findings ----------------------------------------------------------------


def _ratio_rows(m: Measurements, numerator: str, denominator: str,
                field: str = "p50") -> list[list[str]]:
    rows = []
    for op in m.measured:
        for scale in m.scales(op):
            rows.append([f"`{m.label(op, scale)}`"] + [
                fmt_ratio(ratio(m.value(field, op, numerator, rtt, scale),
                                m.value(field, op, denominator, rtt, scale)))
                for rtt in m.rtts])
    return rows


def _ratio_table(m: Measurements, numerator: str, denominator: str,
                 field: str = "p50") -> Table:
    return Table(["operation", *(f"{fmt_rtt(r)} ms" for r in m.rtts)],
                 _ratio_rows(m, numerator, denominator, field))


def _lock_phrase(m: Measurements) -> str:
    if m.backend == "sqlite":
        return "(on SQLite, the database-wide write lock once it has written)"
    return "(and so the `dag_run` row lock)"


def _headline(m: Measurements, rtt: float) -> str:
    scale = m.reference_scale(HEADLINE)
    proxy = m.stat(HEADLINE, "proxy", rtt, scale)
    logical = m.stat(HEADLINE, "logical", rtt, scale)
    if proxy is None or logical is None:
        return (f"`{HEADLINE}`: proxy against logical {NOT_MEASURED} at this RTT "
                f"(proxy {'measured' if proxy else NOT_MEASURED}, "
                f"logical {'measured' if logical else NOT_MEASURED}).")
    text = (f"`{m.label(HEADLINE, scale)}` is {compared(ratio(proxy['p50'], logical['p50']))} "
            f"through the proxy than through the logical API (p50 {fmt_ms(proxy['p50'])} ms "
            f"against {fmt_ms(logical['p50'])} ms; {fmt_count(proxy['round_trips'])} round "
            f"trips against {fmt_count(logical['round_trips'])})")
    txn = ratio(proxy["txn_s"], logical["txn_s"])
    if txn is not None:
        text += (f"; it holds the transaction {_lock_phrase(m)} "
                 f"{compared(txn, 'longer', 'shorter')} (mean {fmt_ms(proxy['txn_s'])} ms "
                 f"against {fmt_ms(logical['txn_s'])} ms)")
    return text + "."


def _comparison(m: Measurements, rtt: float, first: str, second: str) -> str:
    pairs = []
    for op in m.measured:
        scale = m.reference_scale(op)
        value = ratio(m.p50(op, first, rtt, scale), m.p50(op, second, rtt, scale))
        if value is not None:
            pairs.append((value, op))
    one, two = MODE_NAMES[first], MODE_NAMES[second]
    if not pairs:
        return f"The {one} against the {two}: {NOT_MEASURED} at this RTT."
    slower = [op for value, op in pairs if value > 1]
    worst, best = max(pairs), min(pairs)
    count = (f"every one of the {len(pairs)}" if len(slower) == len(pairs)
             else f"{len(slower)} of the {len(pairs)}")
    middle = fmt_ratio(median([v for v, _ in pairs]))
    summary = (f"The {one} is slower than the {two} in {count} operations measured in "
               f"both (median {first}÷{second} p50 ratio {middle}; "
               f"worst `{worst[1]}` at {fmt_ratio(worst[0])}, best `{best[1]}` at "
               f"{fmt_ratio(best[0])}).")
    if not slower:
        summary = (f"The {one} is not slower than the {two} in any of the {len(pairs)} "
                   f"operations measured in both (median ratio {middle}).")
    return summary


def _throughput_finding(m: Measurements, rtt: float) -> str | None:
    if rtt not in m.throughput_rtts:
        return None
    clients = max(m.client_counts)
    runs = {mode: m.throughput_run(mode, rtt, clients) for mode in MODES}
    parts = [f"{mode} {fmt(run['throughput'])} calls/s (p99 {fmt_ms(run.get('p99_s'))} ms)"
             if run else f"{mode} {NOT_MEASURED}" for mode, run in runs.items()]
    text = f"With {clients} concurrent clients: " + "; ".join(parts) + "."
    proxy, logical = runs["proxy"], runs["logical"]
    if proxy and logical:
        value = ratio(proxy["throughput"], logical["throughput"])
        if value is not None:
            change = (f"{fmt_percent(1 - value)} less" if value < 1
                      else f"{fmt_percent(value - 1)} more")
            text += (f" The proxy's throughput is {fmt_ratio(value)} the logical API's "
                     f"({change}).")
    return text


def break_even_verdict(m: Measurements, op: str, scale: int | None) -> tuple[str, str, str]:
    """Fitted proxy and logical lines of p50 (ms) over RTT (ms) and where they cross."""
    pairs = [(rtt, _ms(m.p50(op, "proxy", rtt, scale)), _ms(m.p50(op, "logical", rtt, scale)))
             for rtt in m.rtts]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    if len(pairs) < 2:
        return NOT_MEASURED, NOT_MEASURED, (
            f"{NOT_MEASURED}: needs at least two RTTs measured in both proxy and logical mode")
    proxy_points = [(r, p) for r, p, _ in pairs]
    logical_points = [(r, q) for r, _, q in pairs]
    (pa, pb), (la, lb) = linear_fit(proxy_points), linear_fit(logical_points)
    fits = (f"{fmt(pa)} + {fmt(pb)} × RTT", f"{fmt(la)} + {fmt(lb)} × RTT")
    low, high = pairs[0][0], pairs[-1][0]
    span = f"{fmt_rtt(low)}–{fmt_rtt(high)} ms"
    crossing = break_even(proxy_points, logical_points)
    if crossing is not None and low <= crossing <= high:
        below, above = ("proxy", "logical") if pb > lb else ("logical", "proxy")
        return fits[0], fits[1], (f"break-even at {fmt(crossing)} ms RTT: below it the "
                                  f"{MODE_NAMES[below]} is faster, above it the "
                                  f"{MODE_NAMES[above]}")
    winners = {"proxy" if p < q else "logical" for _, p, q in pairs}
    if len(winners) == 1:
        winner = MODE_NAMES[winners.pop()]
        text = (f"no break-even in the measured range ({span}): the {winner} is faster at every "
                "measured RTT")
    else:
        per_rtt = ", ".join(f"{'proxy' if p < q else 'logical'} at {fmt_rtt(r)} ms"
                            for r, p, q in pairs)
        text = (f"no break-even of the fitted lines in the measured range ({span}); the "
                f"faster mode changes between RTTs ({per_rtt})")
    if crossing is not None:
        text += f"; the fitted lines cross at {fmt(crossing)} ms, outside the measured range"
    else:
        text += "; the fitted lines do not cross at any RTT ≥ 0"
    return fits[0], fits[1], text


def _overall(m: Measurements) -> str:
    """One sentence over every cell measured in both proxy and logical mode."""
    values = [ratio(m.p50(op, "proxy", rtt, scale), m.p50(op, "logical", rtt, scale))
              for op in m.measured for scale in m.scales(op) for rtt in m.rtts]
    values = [v for v in values if v is not None]
    if not values:
        return f"**In short**: proxy against logical API {NOT_MEASURED}."
    slower = sum(v > 1 for v in values)
    text = (f"**In short**: the proxy was slower than the logical API in {slower} of the "
            f"{len(values)} (operation, scale, RTT) cells measured in both modes; its p50 "
            f"latency ranged from {fmt_ratio(min(values))} to {fmt_ratio(max(values))} the "
            f"logical API's (median {fmt_ratio(median(values))}).")
    if slower == len(values):
        text += " No measured cell favours the proxy."
    return text


def _findings(m: Measurements) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Findings"),
        Paragraph("Ratios compare p50 latencies (or mean transaction-open times) of the same "
                  "operation at the same RTT and scale; a ratio above 1 means the first-named "
                  "mode is slower. Summaries use each operation at the scale closest to "
                  f"{REFERENCE_SCALE} tasks per DAG."),
    ]
    if not m.samples:
        return blocks + [Paragraph(f"No samples: findings {NOT_MEASURED}.")]
    blocks.append(Paragraph(_overall(m)))
    for rtt in m.rtts:
        items = [_headline(m, rtt), _comparison(m, rtt, "proxy", "logical"),
                 _comparison(m, rtt, "proxy", "direct"), _comparison(m, rtt, "logical", "direct")]
        throughput = _throughput_finding(m, rtt)
        if throughput:
            items.append(throughput)
        blocks += [Heading(3, f"At {fmt_rtt(rtt)} ms RTT"), Bullets(items)]
    blocks += [
        Heading(3, "Proxy ÷ logical, p50 latency"), _ratio_table(m, "proxy", "logical"),
        Heading(3, "Proxy ÷ direct, p50 latency"), _ratio_table(m, "proxy", "direct"),
        Heading(3, "Logical ÷ direct, p50 latency"), _ratio_table(m, "logical", "direct"),
        Heading(3, "Break-even RTT, proxy against logical"),
        Paragraph("Least-squares lines of p50 latency (ms) over injected RTT (ms) for each "
                  "mode; the break-even RTT is where they cross (`stats.break_even`)."),
    ]
    rows, crossings = [], []
    for op in m.measured:
        for scale in m.scales(op):
            proxy_fit, logical_fit, verdict = break_even_verdict(m, op, scale)
            rows.append([f"`{m.label(op, scale)}`", proxy_fit, logical_fit, verdict])
            if verdict.startswith("break-even"):
                crossings.append(f"`{m.label(op, scale)}`")
    blocks.append(Table(["operation", "proxy p50 (ms)", "logical p50 (ms)", "verdict"], rows))
    blocks.append(Paragraph(
        f"A break-even RTT inside the measured range exists for {len(crossings)} of "
        f"{len(rows)} operation/scale pairs" + (f": {', '.join(crossings)}." if crossings
                                                  else ".")))
    return blocks


# --- section 6: answers to the seed thread ---------------------------------------------


def _answer_returns(m: Measurements) -> list[Block]:
    blocks: list[Block] = [
        Heading(3, "(a) What do the calls return, and how is a change saved?"),
        Paragraph(
            "The thread asked what `db_client.get_dag_run(...)` returns and how "
            "`dag_run.queued_at = timezone.now()` is then saved. **Proxy**: the calls are the "
            "application's own SQLAlchemy calls, so they return the same attached ORM objects "
            "a direct session returns (relationships, lazy loads and refreshes work, each one "
            "more statement over HTTP), and a change is saved by the normal flush and commit; "
            "no new API is needed. **Logical**: the operation returns detached instances "
            "carrying column values only (no session: nothing lazy-loads, changes are not "
            "tracked), so every write needs a dedicated operation, such as the thread's "
            "`enqueue_dag_run`, and the caller must know in advance what to load."),
    ]
    rtt = m.rtts[0] if m.rtts else None
    writes = [op for op in WRITE_OPERATIONS if op in m.measured]
    if rtt is None or not writes:
        return blocks + [Paragraph(f"Round trips per write operation: {NOT_MEASURED}.")]
    rows = []
    for op in writes:
        scale = m.reference_scale(op)
        row = [f"`{m.label(op, scale)}`"]
        for mode, field in (("proxy", "round_trips"), ("proxy", "statements"),
                            ("logical", "round_trips"), ("direct", "statements")):
            s = m.stat(op, mode, rtt, scale)
            row.append(NOT_MEASURED if s is None else fmt_count(s[field]))
        rows.append(row)
    blocks.append(Paragraph(f"Measured cost of each write operation at {fmt_rtt(rtt)} ms RTT "
                            "(means per call):"))
    blocks.append(Table(["operation", "proxy round trips", "proxy statements",
                         "logical round trips", "direct statements"], rows))
    trips = [m.value("round_trips", op, "proxy", rtt, m.reference_scale(op)) for op in writes]
    trips = [t for t in trips if t is not None]
    if trips:
        blocks.append(Paragraph(
            f"Through the proxy the write operations took {fmt_count(min(trips))} to "
            f"{fmt_count(max(trips))} HTTP round trips per call (statements whose results are "
            "not needed are pipelined into one request at flush); each round trip costs one "
            "RTT."))
    return blocks


def _answer_serialization(m: Measurements) -> list[Block]:
    blocks: list[Block] = [Heading(3, "(b) What does serialization cost?")]
    if not m.rtts or not m.measured:
        return blocks + [Paragraph(f"Serialization cost: {NOT_MEASURED}.")]
    rtt = m.rtts[0]
    rows, byte_ratios, shares = [], [], {"proxy": [], "logical": []}
    for op in m.measured:
        scale = m.reference_scale(op)
        proxy, logical = m.stat(op, "proxy", rtt, scale), m.stat(op, "logical", rtt, scale)
        row = [f"`{m.label(op, scale)}`", fmt_bytes(_bytes(proxy)) if proxy else NOT_MEASURED,
               fmt_bytes(_bytes(logical)) if logical else NOT_MEASURED]
        value = ratio(_bytes(proxy), _bytes(logical))
        if value is not None:
            byte_ratios.append(value)
        row.append(fmt_ratio(value))
        for mode, s in (("proxy", proxy), ("logical", logical)):
            share = None if s is None else ratio(s["server_s"], s["mean"])
            if share is not None:
                shares[mode].append(share)
            row.append(fmt_percent(share))
        rows.append(row)
    blocks.append(Paragraph(
        f"Bytes per call and the share of the latency spent inside the server (server time ÷ "
        f"mean latency) at {fmt_rtt(rtt)} ms RTT. Values travel as typed JSON in both modes; "
        "the rest of each call's time is client-side work (ORM, encoding, decoding), HTTP "
        "and the network. Encoding time itself is not timed separately: not measured."))
    blocks.append(Table(["operation", "proxy bytes", "logical bytes", "proxy ÷ logical",
                         "proxy server share", "logical server share"], rows))
    summary = []
    if byte_ratios:
        summary.append(f"The proxy moved {fmt_ratio(min(byte_ratios))} to "
                       f"{fmt_ratio(max(byte_ratios))} the bytes of the logical API per call "
                       f"(median {fmt_ratio(median(byte_ratios))}).")
    for mode, values in shares.items():
        if values:
            summary.append(f"The server's share of {mode} latency ranged from "
                           f"{fmt_percent(min(values))} to {fmt_percent(max(values))} "
                           f"(median {fmt_percent(median(values))}).")
    blocks.append(Paragraph(" ".join(summary) or f"Bytes and server time: {NOT_MEASURED}."))
    return blocks


def _answer_few_hundred_rows(m: Measurements) -> list[Block]:
    blocks: list[Block] = [Heading(3, "(c) Is it slower for operations touching a few hundred "
                                      "rows?")]
    scaled = [op for op in SCALED_OPERATIONS if op in m.measured]
    if not scaled:
        return blocks + [Paragraph(f"Scaled operations: {NOT_MEASURED}.")]
    largest = max(max(m.scales(op)) for op in scaled)
    if largest < FEW_HUNDRED:
        blocks.append(Paragraph(
            f"The largest scale measured is {largest} tasks per DAG, short of \"a few hundred "
            "rows\"; the numbers below are the closest this run measured."))
    rows, slower, cells, worst = [], 0, 0, None
    for op in scaled:
        if largest not in m.scales(op):
            rows.append([f"`{op}`", DASH] + [NOT_MEASURED] * 6)
            continue
        for rtt in m.rtts:
            p50s = {mode: m.p50(op, mode, rtt, largest) for mode in MODES}
            versus_logical = ratio(p50s["proxy"], p50s["logical"])
            rows.append([f"`{op}`", fmt_rtt(rtt), *(fmt_ms(p50s[mode]) for mode in MODES),
                         fmt_ratio(versus_logical), fmt_ratio(ratio(p50s["proxy"],
                                                                    p50s["direct"])),
                         fmt_count(m.value("round_trips", op, "proxy", rtt, largest))])
            if versus_logical is not None:
                cells += 1
                slower += versus_logical > 1
                worst = versus_logical if worst is None else max(worst, versus_logical)
    blocks.append(Paragraph(f"At {largest} tasks per DAG (one row per task instance), p50 "
                            "latency in ms:"))
    blocks.append(Table(["operation", "RTT (ms)", "direct", "proxy", "logical",
                         "proxy ÷ logical", "proxy ÷ direct", "proxy round trips"], rows))
    if cells:
        blocks.append(Paragraph(
            f"The proxy was slower than the logical API in {slower} of {cells} "
            f"(operation, RTT) cells at this scale"
            + (f", by up to {fmt_ratio(worst)}." if worst is not None and worst > 1 else ".")))
    return blocks


def _answer_transactions(m: Measurements) -> list[Block]:
    blocks: list[Block] = [
        Heading(3, "(d) Transaction integrity"),
        Paragraph(
            "Both remote modes run one database transaction per operation: the logical API "
            "runs the function inside one transaction on the server; the proxy opens a "
            "server-held transaction with the operation's first statement and commits it at "
            "the end, so the operation is exactly as atomic as in direct mode. What differs is "
            "how long that transaction stays open: through the proxy it spans the client's "
            "round trips, so its locks are held while the network and the client work. "
            "Transaction-open time, proxy ÷ logical (mean per call):"),
        _ratio_table(m, "proxy", "logical", "txn_s"),
        Paragraph("Proxy ÷ direct, transaction-open time:"),
        _ratio_table(m, "proxy", "direct", "txn_s"),
        Paragraph(
            "That the same script of operations leaves identical database contents in every "
            "mode is checked by the test suite (`tests/test_workload_modes.py`), not by this "
            "run: not measured here."),
    ]
    if m.backend == "sqlite":
        blocks.append(Paragraph("On SQLite a writing transaction holds the database-wide write "
                                "lock, so a longer transaction blocks every other writer."))
    return blocks


def _answer_one_place(m: Measurements) -> list[Block]:
    per_mode = {mode: [op for op in m.measured if mode in m.modes_of(op)] for mode in MODES}
    everywhere = [op for op in m.measured if len(m.modes_of(op)) == len(MODES)]
    partial = [op for op in m.measured if op not in everywhere]
    counts = ", ".join(f"{mode} {len(ops)}" for mode, ops in per_mode.items())
    text = (f"All three modes ran the very same operation functions: {len(everywhere)} "
            f"operations were measured in all three modes ({_listing(everywhere)}). "
            f"Operations per mode: {counts}.")
    if partial:
        text += f" Measured in some modes only: {_listing(partial)}."
    return [
        Heading(3, "(e) What does keeping the logic in one place cost?"),
        Paragraph(text),
        Paragraph("Neither remote mode needed a second copy of any operation: the proxy swaps "
                  "only the session factory; the logical API needs one decorator per function "
                  "and arguments and results that encode as typed JSON or detached instances. "
                  "The development effort of either approach is not measured."),
    ]


def _answers(m: Measurements) -> list[Block]:
    return [Heading(2, "Answers to the seed thread's questions"), *_answer_returns(m),
            *_answer_serialization(m), *_answer_few_hundred_rows(m), *_answer_transactions(m),
            *_answer_one_place(m)]


# --- section 7: threats to validity -----------------------------------------------------


def _threats(m: Measurements) -> list[Block]:
    c, env = m.config, m.environment
    cores = env.get("cores")
    samples = c.get("samples")
    items = [
        "Loopback networking: client, relay, server and database share one host; there is no "
        "real network card, no TLS and no proxy or load balancer in the path.",
        (f"{cores} CPU cores" if cores else "An unrecorded number of CPU cores")
        + " shared by the client, the relay's threads, the server and the database: the modes "
        "with more processes and threads compete for the same cores.",
        "The relay models latency only: no bandwidth limit, packet loss or jitter, so the "
        "bytes each mode sends cost nothing here beyond encoding them.",
        "Small data sets: "
        + (f"{c.get('dags')} DAGs with {c.get('runs_per_dag')} runs each, "
           if c.get("dags") is not None else "")
        + (f"up to {max(c['scales'])} tasks per DAG; " if c.get("scales") else "")
        + "every table fits in memory and caches stay warm.",
        (f"{plural(samples, 'sample')} per cell after "
         f"{plural(c.get('warmup', NOT_MEASURED), 'warm-up call')}"
         if samples is not None else "Sample counts not recorded")
        + ("; with fewer than 100 samples the p99 is close to the largest sample"
           if samples is not None and samples < 100 else "")
        + (f"; throughput runs last {c['throughput_seconds']} s each"
           if c.get("throughput_seconds") is not None else "")
        + ". One run, on one machine, without repetitions or confidence intervals.",
    ]
    if m.backend == "sqlite":
        items.insert(3, "SQLite direct mode has no network at all: at RTT above 0 the direct "
                        "numbers compare an in-process database with remote modes that pay "
                        "the RTT, and SQLite locks the whole database for writes.")
    errors = sum(sum((t.get("errors") or {}).values()) for t in m.throughput)
    if errors:
        items.append(f"The throughput runs recorded {errors} failed calls (see the table).")
    return [Heading(2, "Threats to validity"), Bullets(items)]


# --- assembly and rendering -------------------------------------------------------------


def build_report(results: dict[str, Any]) -> list[Block]:
    """The report's content as blocks, computed from ``results`` only."""
    m = Measurements(results)
    backend = m.environment.get("backend", "an unrecorded backend")
    intro = Paragraph(
        f"Direct database access, the session proxy and the logical API running the same "
        f"operations on {backend}. Run from {results.get('started', 'not recorded')} to "
        f"{results.get('finished', 'not recorded')} ({_duration(results)}); {len(m.samples)} "
        f"samples, {len(m.floors)} floor samples, {len(m.throughput)} throughput runs. Every "
        "number below is computed from the run's results file.")
    from .report_reliability import reliability_section
    from .report_security import security_section
    from .report_targets import targets_section

    # The load run (``session-proxy-bench load``) is separate; its section
    # appears when its result was embedded with ``run --load-results``.
    reliability = reliability_section(results) if results.get("reliability") else []

    return [
        Heading(1, "Session proxy vs logical API vs direct: benchmark report"), intro,
        *_method(m), *_environment(m), *_floors(m), *targets_section(m, results),
        *_operations(m), *_throughput(m),
        *_charts(m), *_findings(m), *security_section(results), *reliability,
        *_answers(m), *_threats(m),
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured markdown; figures link their ``chart-*.svg`` files."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |",
                     "|" + "|".join("---" for _ in block.headers) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Code):
            out.append(f"```\n{block.text}\n```")
        elif isinstance(block, Figure):
            out.append(f"![{block.title}]({block.filename})\n\n*{block.caption}*")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
.scroll { overflow-x: auto; }
pre { background: #f6f6f6; padding: 0.7em; overflow-x: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
figure { margin: 1em 0 1.6em; }
figcaption { font-size: 0.9em; color: #555; }
svg { max-width: 100%; height: auto; }
"""


def render_html(blocks: Sequence[Block]) -> str:
    """The blocks as one self-contained HTML page: inline CSS and SVG, no scripts."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "Benchmark report")
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>",
           "<body>"]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items)
                       + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row)
                           + "</tr>" for row in block.rows)
            out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                       f"<tbody>{body}</tbody></table></div>")
        elif isinstance(block, Code):
            out.append(f"<pre>{html.escape(block.text)}</pre>")
        elif isinstance(block, Figure):
            out.append(f"<figure>{block.svg}<figcaption>{_inline_html(block.caption)}"
                       "</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def write_report(results: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md`` (with its ``chart-*.svg`` files) and ``report.html`` to ``out_dir``.

    Returns the paths of the markdown and the HTML file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = build_report(results)
    for stale in out_dir.glob("chart-*.svg"):
        stale.unlink()
    for block in blocks:
        if isinstance(block, Figure):
            (out_dir / block.filename).write_text(block.svg + "\n", encoding="utf-8")
    markdown = out_dir / "report.md"
    page = out_dir / "report.html"
    markdown.write_text(render_markdown(blocks), encoding="utf-8")
    page.write_text(render_html(blocks), encoding="utf-8")
    return markdown, page
