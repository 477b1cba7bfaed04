"""Rows of the Targets table for issue 16's goals (a production serving path).

Each function turns raw numbers of the results into one row ``[target, goal,
measured, verdict]``; a number the results do not hold (an older results
file, a run without a 0 ms or 1 ms RTT, a run against ``--server-url``)
gives "not measured".  The inputs:

- ``results["targets"]`` (:mod:`session_proxy_bench.targets_probe`): server CPU,
  client CPU, database round trips, throughput with client processes;
- the floors ``proxy_select_txn`` and ``db_select_1`` (a one-row SELECT in an open
  transaction, proxy and direct SQLAlchemy) and ``http_echo``.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from ...stats import select
from ..formatting import NOT_MEASURED, fmt_ms, fmt_ratio, fmt_ratio_ci, fmt_rtt
from ..measurements import Measurements, p50_latency

SERVER_CPU_LIMIT_US = 300.0
CLIENT_CPU_LIMIT_US = 300.0
TXN_SELECT_LIMIT = 2.0
ECHO_OVERHEAD_LIMIT_MS = 0.3
ECHO_OVERHEAD_RTT_MS = 1.0
PROCESS_THROUGHPUT_LIMIT = 0.25
NOT_APPLICABLE = "not applicable"


def verdict(value: float | None, limit: float, at_least: bool = False) -> str:
    """``met``, ``**missed**`` or "not measured"; ``at_least``: the goal is a floor."""
    if value is None:
        return NOT_MEASURED
    met = value >= limit if at_least else value <= limit
    return "met" if met else "**missed**"


def _entry(m: Measurements, name: str) -> dict[str, Any] | None:
    targets = m.results.get("targets")
    entry = targets.get(name) if isinstance(targets, dict) else None
    return entry if isinstance(entry, dict) else None


def server_cpu_row(m: Measurements) -> list[str]:
    """Server CPU per one-statement pipeline request."""
    entry = _entry(m, "server_cpu") or {}
    requests = entry.get("requests")
    per_us = entry["cpu_s"] / requests * 1e6 if requests else None
    measured = NOT_MEASURED if per_us is None else f"{per_us:.0f} µs ({requests:,} requests)"
    return ["server CPU per one-statement pipeline request (utime + stime), 0 ms RTT",
            f"≤ {SERVER_CPU_LIMIT_US:.0f} µs", measured, verdict(per_us, SERVER_CPU_LIMIT_US)]


def client_cpu_row(m: Measurements) -> list[str]:
    """Client CPU per proxied one-row SELECT above the same SELECT through direct SQLAlchemy."""
    entry = _entry(m, "client_cpu")
    above = None
    measured = NOT_MEASURED
    if entry and entry.get("proxy_s") and entry.get("direct_s"):
        proxy_us, direct_us = median(entry["proxy_s"]) * 1e6, median(entry["direct_s"]) * 1e6
        above = proxy_us - direct_us
        measured = f"{above:.0f} µs ({proxy_us:.0f} µs vs {direct_us:.0f} µs per statement)"
    return ["client CPU per one-row SELECT in a transaction, proxy − direct SQLAlchemy",
            f"≤ {CLIENT_CPU_LIMIT_US:.0f} µs above", measured,
            verdict(above, CLIENT_CPU_LIMIT_US)]


def txn_select_row(m: Measurements) -> list[str]:
    """A one-row SELECT in an open transaction, proxy ÷ direct SQLAlchemy p50 at 0 ms."""
    proxy = p50_latency(select(m.floors, floor="proxy_select_txn", rtt_ms=0.0))
    direct = p50_latency(select(m.floors, floor="db_select_1", rtt_ms=0.0))
    value = proxy / direct if proxy and direct else None
    measured = NOT_MEASURED if value is None else (
        f"{fmt_ratio_ci(m.floor_ratio('proxy_select_txn', 'db_select_1', 0.0))}, p50 "
        f"{fmt_ms(proxy)} ms vs {fmt_ms(direct)} ms")
    return ["one-row SELECT in an open transaction, proxy ÷ direct SQLAlchemy p50, 0 ms RTT",
            f"≤ {TXN_SELECT_LIMIT}×", measured, verdict(value, TXN_SELECT_LIMIT)]


def echo_overhead_row(m: Measurements) -> list[str]:
    """HTTP echo p50 above the injected RTT, at 1 ms."""
    echo = p50_latency(select(m.floors, floor="http_echo", rtt_ms=ECHO_OVERHEAD_RTT_MS))
    above_ms = echo * 1000 - ECHO_OVERHEAD_RTT_MS if echo is not None else None
    measured = NOT_MEASURED if above_ms is None else (
        f"{above_ms:.2f} ms ({fmt_ms(echo)} ms p50)")
    return [f"HTTP echo p50 above the injected RTT, {fmt_rtt(ECHO_OVERHEAD_RTT_MS)} ms RTT",
            f"≤ {ECHO_OVERHEAD_LIMIT_MS} ms", measured,
            verdict(above_ms, ECHO_OVERHEAD_LIMIT_MS)]


def round_trips_row(m: Measurements) -> list[str]:
    """Database round trips per proxied transaction against direct (one-row SELECT + COMMIT)."""
    label = "database round trips per transaction (one-row SELECT + COMMIT), proxy vs direct"
    entry = _entry(m, "db_round_trips")
    if entry is None:
        return [label, "= direct", NOT_MEASURED, NOT_MEASURED]
    if not entry.get("applicable", True):
        reason = entry.get("reason") or "no network between client and database"
        return [label, "= direct", f"{NOT_APPLICABLE} ({reason})", NOT_APPLICABLE]
    proxy, direct = entry.get("proxy") or [], entry.get("direct") or []
    if not proxy or not direct:
        return [label, "= direct", NOT_MEASURED, NOT_MEASURED]
    worst_proxy, worst_direct = max(proxy), max(direct)
    measured = f"{worst_proxy} vs {worst_direct} (per transaction: {proxy} vs {direct})"
    return [label, "= direct", measured, "met" if worst_proxy <= min(direct) else "**missed**"]


def process_throughput_row(m: Measurements) -> list[str]:
    """Read transactions per second with client processes, proxy ÷ direct at 0 ms."""
    entry = _entry(m, "process_throughput")
    processes = entry.get("processes") if entry else None
    label = (f"throughput of one-row read transactions, {processes or 4} client processes, "
             "proxy ÷ direct, 0 ms RTT")
    value, measured = None, NOT_MEASURED
    proxy = entry.get("proxy") if entry else None
    direct = entry.get("direct") if entry else None
    if proxy and direct and direct.get("throughput"):
        value = proxy["throughput"] / direct["throughput"]
        measured = (f"{fmt_ratio(value)} ({proxy['throughput']:,.0f}/s vs "
                    f"{direct['throughput']:,.0f}/s)")
        errors = (proxy.get("errors") or 0) + (direct.get("errors") or 0)
        if errors:
            measured += f", {errors} errors"
    return [label, f"≥ {PROCESS_THROUGHPUT_LIMIT}×", measured,
            verdict(value, PROCESS_THROUGHPUT_LIMIT, at_least=True)]


def issue_rows(m: Measurements) -> list[list[str]]:
    """The rows of issue 16's goals that the floors and probes alone do not give."""
    return [server_cpu_row(m), client_cpu_row(m), txn_select_row(m), echo_overhead_row(m),
            round_trips_row(m), process_throughput_row(m)]
