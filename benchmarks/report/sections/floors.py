"""The report's "Floors" section: the cheapest exchange on each path, per RTT.

A direct ``SELECT 1``, a bare HTTP echo and a ``SELECT 1`` through the proxy,
from the results' ``floors`` entry.
"""

from __future__ import annotations

from ...stats import select
from ..document import Block, Heading, Paragraph, Table
from ..formatting import NOT_MEASURED, fmt_ms, fmt_ms_ci, fmt_ratio, fmt_rtt
from ..measurements import Measurements, p50_latency

FLOORS = ("db_select_1", "http_echo", "proxy_select_1")


def _note(rtt: float, echo: float, select_1: float | None) -> str:
    note = f"at {fmt_rtt(rtt)} ms RTT one HTTP round trip costs {fmt_ms(echo)} ms"
    if rtt:
        note += f", {fmt_ms(max(echo - rtt / 1000, 0.0))} ms above the injected RTT"
    if select_1:
        note += f", {fmt_ratio(echo / select_1)} a direct `SELECT 1`"
    return note


def floors_section(m: Measurements) -> list[Block]:
    """Heading, the p50 of each floor per RTT, and what one round trip costs."""
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
        for floor in FLOORS:
            rows_of_floor = select(m.floors, floor=floor, rtt_ms=rtt)
            p50s[floor] = p50_latency(rows_of_floor)
            row += [fmt_ms_ci(m.floor_interval(floor, rtt)), str(len(rows_of_floor))]
        rows.append(row)
        echo = p50s["http_echo"]
        if echo is not None:
            notes.append(_note(rtt, echo, p50s["db_select_1"]))
    blocks.append(Table(["RTT (ms)", "direct SELECT 1 p50 (ms)", "n", "HTTP echo p50 (ms)", "n",
                         "proxy SELECT 1 p50 (ms)", "n"], rows))
    blocks.append(Paragraph("In parentheses: the 95% bootstrap interval of each p50."))
    if notes:
        blocks.append(Paragraph("Per request: " + "; ".join(notes) + ". Every proxy round trip "
                                "and every logical call pays at least this."))
    return blocks
