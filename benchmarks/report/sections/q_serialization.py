"""The section answering "how much do serialization and the extra layer cost?" (Andrew).

Reads :mod:`session_proxy_bench.questions.serialization`'s raw numbers: per
operation, scale and design the bytes and the timed (de)serialization
phases, and the end-to-end latencies per mode.
"""

from __future__ import annotations

from typing import Any

from ...intervals import fmt_interval, percentile_interval, ratio_interval
from ..document import Block, Heading, Paragraph, Table
from ..formatting import fmt, fmt_count, fmt_ms, fmt_ratio, fmt_rtt

PHASES = {
    "client_encode": "client encode",
    "server_decode": "server decode",
    "server_encode": "server encode",
    "client_decode": "client decode",
}
OPERATION_NOTES = {
    "get_task_instances": "load every task instance of the run (n rows back)",
    "mini_scheduler": "read the run's n task instances, schedule the ready ones",
    "create_dag_run": "write a dag run and its n task instances",
}


def _per_row_us(times: list[float], rows: int) -> str:
    return fmt_interval(percentile_interval([t / rows * 1e6 for t in times], 50), fmt)


def _totals(entry: dict[str, Any]) -> list[float]:
    """Seconds of all four phases, repeat by repeat (they were timed in the same loop)."""
    phases = entry["phases_s"]
    return [sum(times) for times in zip(*(phases[p] for p in PHASES), strict=True)]


def _payload_table(raw: dict[str, Any], operation: str) -> Table:
    rows = []
    for entry in raw["payloads"]:
        if entry["operation"] != operation:
            continue
        n = entry["tasks"]
        phases = entry["phases_s"]
        rows.append([
            str(n), entry["design"], fmt_count(entry["round_trips"]),
            fmt((entry["request_bytes"] + entry["response_bytes"]) / n),
            *(_per_row_us(phases[p], n) for p in PHASES),
            fmt_interval(percentile_interval(_totals(entry), 50), fmt_ms),
        ])
    return Table(["tasks (n)", "design", "round trips", "bytes per row",
                  *(f"{label}, µs per row" for label in PHASES.values()),
                  "all four, ms per call"], rows)


def _summary(raw: dict[str, Any]) -> Paragraph | None:
    """The largest scale's load and write, in words."""
    by_key = {(e["operation"], e["tasks"], e["design"]): e for e in raw["payloads"]}
    n = max(raw["scales"])
    load = [by_key.get(("get_task_instances", n, d)) for d in ("proxy", "logical")]
    write = [by_key.get(("create_dag_run", n, d)) for d in ("proxy", "logical")]
    if None in load or None in write:
        return None
    (proxy, logical), totals = load, [_totals(e) for e in load]
    per_row = [percentile_interval([t / n * 1e6 for t in design], 50) for design in totals]
    ratio = fmt_interval(ratio_interval(totals[1], totals[0]), fmt_ratio)
    return Paragraph(
        f"In short, at {n} rows: loading the run's task instances cost "
        f"{fmt_interval(per_row[0], fmt)} µs per row "
        "of (de)serialization on both sides together through the proxy and "
        f"{fmt_interval(per_row[1], fmt)} µs through "
        f"the logical API, {ratio} the proxy's, for {fmt(proxy['response_bytes'] / n)} "
        f"and {fmt(logical['response_bytes'] / n)} response bytes per row. "
        "Writing them (`create_dag_run`), the proxy sent "
        f"{fmt(write[0]['request_bytes'] / n)} bytes per row in {write[0]['round_trips']} "
        f"requests; the logical call sent {write[1]['request_bytes']} bytes in all, since the "
        "server builds the rows.")


def _latency_table(raw: dict[str, Any]) -> Table:
    latency = {(e["operation"], e["tasks"], e["mode"]): e["latency_s"] for e in raw["latency"]}
    rows = []
    for operation, tasks in sorted({(e["operation"], e["tasks"]) for e in raw["latency"]},
                                   key=lambda k: (k[0], k[1])):
        cells = [f"`{operation}`", str(tasks)]
        for mode in ("direct", "proxy", "logical"):
            values = latency.get((operation, tasks, mode))
            cells.append(fmt_interval(percentile_interval(values or [], 50), fmt_ms))
        proxy, logical = latency.get((operation, tasks, "proxy")), latency.get(
            (operation, tasks, "logical"))
        cells.append(fmt_interval(ratio_interval(proxy or [], logical or []), fmt_ratio))
        rows.append(cells)
    return Table(["operation", "tasks", "direct p50 ms", "proxy p50 ms", "logical p50 ms",
                  "proxy ÷ logical"], rows)


def serialization_section(raw: dict[str, Any]) -> list[Block]:
    """Per-row (de)serialization cost and bytes at each scale, and end-to-end latency."""
    blocks: list[Block] = [
        Heading(3, "How much do serialization and the extra layer cost for operations "
                   "touching a few hundred rows? (asked by Andrew Godwin)"),
        Paragraph(
            "Andrew expected a direct ORM mapping over an API to be considerably slower for any "
            "operation touching a few hundred rows, and asked how data is serialised to and "
            "from the database side. Every request and response body of three operations was "
            f"captured as sent at {fmt_count(len(raw['scales']))} scales, then put through the "
            "functions each side runs on it, timed in one process "
            f"({raw['repeats']} times each; medians with bootstrap 95% intervals, per row of "
            "the operation). The proxy's values are statement parameters and driver rows "
            "(`session_proxy.wire.codec`); the logical design's are the operation's arguments "
            "and result, whose decoding builds detached ORM instances. The proxy's client "
            "decode yields rows, which SQLAlchemy then loads into instances exactly as it "
            "does in direct mode; that loading is not counted here."),
    ]
    summary = _summary(raw)
    if summary is not None:
        blocks.append(summary)
    for operation, note in OPERATION_NOTES.items():
        if any(e["operation"] == operation for e in raw["payloads"]):
            blocks.append(Paragraph(f"`{operation}`: {note}."))
            blocks.append(_payload_table(raw, operation))
    if raw.get("latency"):
        blocks.append(Paragraph(
            "End to end, at "
            f"{fmt_rtt(raw['latency_rtt_ms'])} ms RTT, the scaled operations in each mode (p50 of "
            f"{raw['latency_samples']} calls with bootstrap 95% intervals; each call on the "
            "restored run, modes interleaved):"))
        blocks.append(_latency_table(raw))
    return blocks
