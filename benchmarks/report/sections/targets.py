"""The report's "Targets" section: the proxy's performance goals, met or not.

Every value comes from the results file: the floors (HTTP echo, a direct
``SELECT 1`` and a one-row SELECT through the proxy, interleaved), the probes of
:mod:`session_proxy_bench.probes`, the ``"targets"`` entry of
:mod:`session_proxy_bench.targets_probe` (server and client CPU, database round
trips, throughput with client processes) and the operation samples.  An
older results file without some of them renders with "not measured".
"""

from __future__ import annotations

from ...stats import select
from ..document import Block, Heading, Paragraph, Table
from ..formatting import NOT_MEASURED, fmt_ms, fmt_ratio, fmt_ratio_ci, fmt_rtt, plural
from ..measurements import Measurements, p50_latency
from ..terms import BEST_MODE
from .target_rows import issue_rows

ECHO_LIMIT = 1.2
ROWS_LIMIT = 2.0
SCHEDULER_LIMIT = 1.5
SCHEDULER_RTT_MS = 1.0
SCHEDULER_SCALE = 100


def _verdict(value: float | None, limit: float) -> str:
    if value is None:
        return NOT_MEASURED
    return "met" if value <= limit else "**missed**"


def _opt_ins(m: Measurements) -> str:
    """Which proxy configuration the operation rows of this run measured."""
    if BEST_MODE in m.modes:
        return ("The `proxy` mode of the operations runs with the defaults; `proxy_best` adds "
                "`proxy_pipeline_dml=True` and `proxy_defer_flush_errors=True` (the workload "
                "never catches errors from a flush or a DML statement, so its behaviour is "
                "unchanged); the Targets' operation row quotes the defaults, and the probes "
                "use the defaults.")
    return ("The proxy mode of the operations runs with `proxy_pipeline_dml=True` and "
            "`proxy_defer_flush_errors=True` (the workload never catches errors from a flush "
            "or a DML statement, so its behaviour is unchanged); the probes use the defaults.")


def targets_section(m: Measurements) -> list[Block]:
    """Heading, table and notes of the targets section."""
    probes = m.results.get("probes") or []
    rows: list[list[str]] = issue_rows(m)
    for rtt in sorted({f["rtt_ms"] for f in m.floors}):
        echo = p50_latency(select(m.floors, floor="http_echo", rtt_ms=rtt))
        proxied = p50_latency(select(m.floors, floor="proxy_select_1", rtt_ms=rtt))
        value = proxied / echo if proxied and echo else None
        shown = m.floor_ratio("proxy_select_1", "http_echo", rtt)
        rows.append([
            f"one-row SELECT through the proxy ÷ HTTP echo, {fmt_rtt(rtt)} ms RTT",
            f"≤ {ECHO_LIMIT}×",
            f"{fmt_ratio_ci(shown)}, p50 {fmt_ms(proxied)} ms vs {fmt_ms(echo)} ms",
            _verdict(value, ECHO_LIMIT),
        ])
    for size in sorted({p["n"] for p in probes if p["probe"] == "flush"}):
        trips = [p["round_trips"] for p in select(probes, probe="flush", mode="proxy", n=size)]
        worst = max(trips) if trips else None
        rows.append([
            f"add {plural(size, 'object')} with client-side keys + commit: round trips",
            "1", "not measured" if worst is None else str(worst),
            "not measured" if worst is None else ("met" if worst == 1 else "**missed**"),
        ])
    for rtt in sorted({p["rtt_ms"] for p in probes if p["probe"] == "select_rows"}):
        proxy = select(probes, probe="select_rows", mode="proxy", rtt_ms=rtt)
        direct = select(probes, probe="select_rows", mode="direct", rtt_ms=rtt)
        proxy_p50, direct_p50 = p50_latency(proxy), p50_latency(direct)
        n = proxy[0]["n"] if proxy else 0
        value = proxy_p50 / direct_p50 if proxy_p50 and direct_p50 else None
        per_row = (f" ({proxy_p50 / n * 1e6:.2f} µs vs {direct_p50 / n * 1e6:.2f} µs per row)"
                   if value is not None and n else "")
        rows.append([
            f"per-row cost of a {n:,}-row SELECT, proxy ÷ direct, {fmt_rtt(rtt)} ms RTT",
            f"≤ {ROWS_LIMIT}×", fmt_ratio(value) + per_row, _verdict(value, ROWS_LIMIT),
        ])
    proxy = m.p50("mini_scheduler", "proxy", SCHEDULER_RTT_MS, SCHEDULER_SCALE)
    logical = m.p50("mini_scheduler", "logical", SCHEDULER_RTT_MS, SCHEDULER_SCALE)
    value = proxy / logical if proxy and logical else None
    shown = m.ratio_interval("mini_scheduler", "proxy", "logical", SCHEDULER_RTT_MS,
                             SCHEDULER_SCALE)
    rows.append([
        f"`mini_scheduler` ({SCHEDULER_SCALE} tasks) at {fmt_rtt(SCHEDULER_RTT_MS)} ms RTT, "
        "proxy ÷ logical p50",
        f"≤ {SCHEDULER_LIMIT}×",
        fmt_ratio_ci(shown) + (f", p50 {fmt_ms(proxy)} ms vs {fmt_ms(logical)} ms"
                               if value else ""),
        _verdict(value, SCHEDULER_LIMIT),
    ])
    return [
        Heading(2, "Targets"),
        Paragraph("The proxy's performance goals, each computed from this run. Server CPU "
                  "is the server process's utime + stime around one-statement pipeline "
                  "requests on one keep-alive connection; client CPU is this process's CPU "
                  "time per statement, proxy and direct SQLAlchemy interleaved; database "
                  "round trips are counted by a 0 ms relay in front of the database; the "
                  "throughput row runs separate client processes, each with its own engine. "
                  "Flushes are "
                  "pipelined: writes whose results nothing needs ride with the next statement "
                  "that needs a result or with the COMMIT. " + _opt_ins(m)),
        Table(["target", "goal", "measured", "verdict"], rows),
    ]
