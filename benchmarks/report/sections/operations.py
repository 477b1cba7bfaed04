"""The report's "Results per operation" section: one table of cells per operation.

Each row is one (mode, RTT, tasks per DAG) cell: latency percentiles over
its samples and the mean counters; cells not measured say so.
"""

from __future__ import annotations

from ..document import Block, Heading, Paragraph, Table
from ..formatting import DASH, NOT_MEASURED, fmt_bytes, fmt_count, fmt_ms, fmt_rtt
from ..measurements import Measurements

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


def operations_section(m: Measurements) -> list[Block]:
    """Heading, then a sub-heading and a table for every operation."""
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
                for mode in m.modes for rtt in m.rtts for scale in scales]
        blocks.append(Table(OPERATION_HEADERS, rows))
    return blocks
