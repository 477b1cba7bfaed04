"""The section answering "is the logical client as shipped better than AIP-44's?".

Reads :mod:`session_proxy_bench.questions.logical_vs_aip44`'s raw numbers:
per RTT, each pattern's per-call latencies and the connections it opened.
"""

from __future__ import annotations

from typing import Any

from ...intervals import fmt_interval, percentile_interval, ratio_interval
from ..document import Block, Heading, Paragraph, Table
from ..formatting import fmt_ms, fmt_ratio, fmt_rtt


def logical_vs_aip44_section(raw: dict[str, Any]) -> list[Block]:
    """Per-call latency of the shipped client and the AIP-44 pattern, and their ratio."""
    rows = []
    for cell in raw["rtts"]:
        shipped, aip44 = cell["latency_s"]["shipped"], cell["latency_s"]["aip44"]
        opened = cell["connections"]
        rows.append([
            fmt_rtt(cell["rtt_ms"]),
            fmt_interval(percentile_interval(shipped, 50), fmt_ms),
            fmt_interval(percentile_interval(aip44, 50), fmt_ms),
            fmt_interval(ratio_interval(aip44, shipped), fmt_ratio),
            f"{opened['shipped']} / {opened['aip44']} for {cell['calls']} calls each",
        ])
    last = raw["rtts"][-1]
    shipped, aip44 = last["latency_s"]["shipped"], last["latency_s"]["aip44"]
    slower = fmt_interval(ratio_interval(aip44, shipped), fmt_ratio)
    summary = (
        f"At {fmt_rtt(last['rtt_ms'])} ms RTT a call in the AIP-44 pattern took {slower}"
        " the shipped client's time; it opened "
        f"{last['connections_total']['aip44']} connections for {last['calls_total']} calls, "
        f"the shipped client {last['connections_total']['shipped']} for as many.")
    scheme = "HTTPS" if raw["tls"] else "plain HTTP (the run's server does not use TLS)"
    return [
        Heading(3, "Is the logical client as shipped better than AIP-44's?"),
        Paragraph(
            "Airflow 2.10's internal API client signed a fresh token and opened a new HTTP "
            "connection for every call. The shipped logical client keeps its connections "
            "alive and sends the same token again. Both called "
            f"`{raw['operation']}` on the same server over {scheme}, alternating call by call, "
            "each through its own relay that charges a new connection its TCP handshake; "
            f"p50 of {raw['samples']} calls per cell with bootstrap 95% intervals."),
        Paragraph(summary),
        Table(["RTT ms", "shipped p50 ms", "AIP-44 pattern p50 ms",
               "AIP-44 ÷ shipped", "new connections (shipped / AIP-44)"], rows),
    ]
