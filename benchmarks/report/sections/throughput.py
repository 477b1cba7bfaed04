"""The report's "Throughput" section: calls per second and tails with concurrent clients.

One row per (RTT, mode, client count) run of the results' ``throughput``
entry; the charts of the same runs are in :mod:`.figures`.
"""

from __future__ import annotations

from ..document import Block, Heading, Paragraph, Table
from ..formatting import DASH, NOT_MEASURED, fmt, fmt_ms, fmt_rtt
from ..measurements import Measurements


def _row(m: Measurements, mode: str, rtt: float, clients: int) -> list[str]:
    run = m.throughput_run(mode, rtt, clients)
    head = [mode, fmt_rtt(rtt), str(clients)]
    if run is None:
        return head + [NOT_MEASURED, DASH, DASH, DASH, DASH]
    errors = run.get("errors") or {}
    return head + [
        str(run.get("operations", DASH)), fmt(run.get("throughput")),
        fmt_ms(run.get("p50_s")), fmt_ms(run.get("p99_s")),
        ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0",
    ]


def throughput_section(m: Measurements) -> list[Block]:
    """Heading, a sentence on the method, and the table of throughput runs."""
    blocks: list[Block] = [
        Heading(2, "Throughput"),
        Paragraph("Concurrent clients, each looping over the light operation mix; "
                  "operations per second over all clients, latency percentiles over all calls."),
    ]
    if not m.throughput:
        blocks.append(Paragraph(f"Throughput: {NOT_MEASURED}."))
        return blocks
    rows = [_row(m, mode, rtt, clients)
            for rtt in m.throughput_rtts for mode in m.modes for clients in m.client_counts]
    blocks.append(Table(["mode", "RTT (ms)", "clients", "calls", "calls/s", "p50 (ms)",
                         "p99 (ms)", "errors"], rows))
    return blocks
