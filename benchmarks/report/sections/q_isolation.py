"""The section answering "why route the scheduler at all" and "no, partial or full isolation".

Renders ``results["questions"]["isolation"]``
(:mod:`session_proxy_bench.questions.isolation`): one row per deployment
option with the latency percentiles of worker and scheduler calls (95%
bootstrap intervals), operations per second, the database connections held
and the server's CPU per call; then the ratios that answer the question.
"""

from __future__ import annotations

from typing import Any

from ...intervals import fmt_interval, percentile_interval, ratio_interval
from ...questions.isolation import QUESTION
from ..document import Block, Heading, Paragraph, Table
from ..formatting import DASH, NOT_MEASURED, compared, fmt, fmt_ms, fmt_ratio

OPTION_NAMES = {
    "none": "no isolation",
    "proxy": "workers through the proxy",
    "logical": "workers through the logical API",
    "full": "full isolation (all through the proxy)",
}


def _connections(option: dict[str, Any]) -> str:
    held = (option.get("connections") or {}).get("held")
    return "n/a" if held is None else str(held)


def _errors(option: dict[str, Any]) -> str:
    return str(sum(sum(option[role]["errors"].values()) for role in ("worker", "scheduler")))


def _row(key: str, option: dict[str, Any]) -> list[str]:
    worker, scheduler = option["worker"]["latency_s"], option["scheduler"]["latency_s"]
    per_call = option.get("server_cpu_per_call_s")
    return [
        OPTION_NAMES.get(key, key),
        fmt_interval(percentile_interval(worker, 50), fmt_ms),
        fmt_interval(percentile_interval(worker, 99), fmt_ms),
        fmt_interval(percentile_interval(scheduler, 50), fmt_ms),
        fmt_interval(percentile_interval(scheduler, 99), fmt_ms),
        fmt(option["worker"]["throughput"]),
        fmt(option["scheduler"]["throughput"]),
        _connections(option),
        DASH if per_call is None else fmt_ms(per_call),
        _errors(option),
    ]


def _ratio_text(options: dict[str, Any], role: str, top: str, bottom: str) -> str:
    if top not in options or bottom not in options:
        return NOT_MEASURED
    interval = ratio_interval(options[top][role]["latency_s"], options[bottom][role]["latency_s"])
    if interval is None:
        return NOT_MEASURED
    value, low, high = interval
    return (f"{fmt_ratio(value)} the latency (95% interval {fmt_ratio(low)}–"
            f"{fmt_ratio(high)}; {compared(value)})")


def isolation_section(raw: dict[str, Any]) -> list[Block]:
    """Heading, method, the table of options and the ratios that answer the question."""
    options = raw["options"]
    blocks: list[Block] = [
        Heading(3, QUESTION.title),
        Paragraph(f"Asked by {QUESTION.asked_by}. A mixed deployment on {raw['backend']}: "
                  f"one scheduler process and {raw['workers']} worker processes run at once "
                  f"for {fmt(raw['seconds_per_option'])} s per option, each option from the "
                  "same seeded rows. Workers repeat "
                  + ", ".join(f"`{op}`" for op in raw["worker_operations"])
                  + "; the scheduler repeats "
                  + ", ".join(f"`{op}`" for op in raw["scheduler_operations"])
                  + ". Latencies are per call, p50 and p99 with 95% bootstrap intervals; "
                  "connections are the most the database counted while the option ran, less "
                  "those other clients held before the measurement; the option without "
                  "isolation runs no server, each other option a freshly started one; "
                  "server CPU is the server process's user + system time per call it "
                  "served."),
        Table(["option", "worker p50 (ms)", "worker p99 (ms)", "scheduler p50 (ms)",
               "scheduler p99 (ms)", "worker calls/s", "scheduler calls/s",
               "DB connections", "server CPU/call (ms)", "errors"],
              [_row(key, option) for key, option in options.items()]),
    ]
    if not raw.get("connections_counted"):
        blocks.append(Paragraph(f"Connections: n/a on {raw['backend']} (no server-side "
                                "connections to count)."))
    blocks.append(Paragraph(
        "Worker calls (p50) through the proxy against direct: "
        f"{_ratio_text(options, 'worker', 'proxy', 'none')}; through the logical API against "
        f"direct: {_ratio_text(options, 'worker', 'logical', 'none')}; through the proxy "
        f"against the logical API: {_ratio_text(options, 'worker', 'proxy', 'logical')}. "
        "Routing the scheduler too (full isolation against workers-only through the proxy) "
        f"gives its calls {_ratio_text(options, 'scheduler', 'full', 'proxy')}. The "
        "options run one after the other, not interleaved: a machine whose load changes "
        "during the run moves them apart."))
    return blocks
