"""The report's "Summary": five findings in plain words, the headline chart and the "why" chart.

Each finding is computed from the results with its 95% bootstrap interval
(:meth:`~session_proxy_bench.report.measurements.Measurements.ratio_interval`):

1. the proxy against the logical API, per operation family and RTT;
2. where the proxy wins and where it loses against a direct connection;
3. round trips per operation, the cause of both;
4. throughput with the most concurrent clients;
5. what the attack suite and the load run found.

The headline chart plots finding 1 against RTT; the second chart splits
each mode's mean latency into round trips × RTT, round trips × the
per-request overhead measured by the floors, the server's time and the rest,
so a reader sees why the ratios are what they are.
"""

from __future__ import annotations

from typing import Any

from ... import charts
from ...stats import Interval, fit_line, median, select
from ..document import Block, Bullets, Figure, Heading, Paragraph
from ..formatting import (
    NOT_MEASURED,
    fmt,
    fmt_count,
    fmt_ms,
    fmt_ratio_ci,
    fmt_rtt,
    plural,
    to_ms,
)
from ..measurements import Measurements, p50_latency
from ..terms import BEST_MODE, FAMILIES, FAMILY_COLORS, HEADLINE, MODE_NAMES, REFERENCE_SCALE

#: The RTT the decomposition chart uses: the measured one closest to this (ms).
DECOMPOSITION_RTT_MS = 5.0
#: Operations of the decomposition chart: one read, one write, one scheduling step.
DECOMPOSED = ("get_dag_run", "heartbeat", HEADLINE)
PART_COLORS = {
    "network: round trips × RTT": "#56B4E9",
    "per-request overhead: round trips × (HTTP echo − RTT)": "#E69F00",
    "server: database work and its own code": "#009E73",
    "rest: the client (direct: client and database)": "#999999",
}


def verdict(value: Interval | None, slower: str = "slower", faster: str = "faster") -> str:
    """``slower`` when the whole interval lies above 1, ``faster`` below, else undecided."""
    if value is None:
        return NOT_MEASURED
    low = value.low if value.has_interval else value.estimate
    high = value.high if value.has_interval else value.estimate
    if low > 1:  # type: ignore[operator]
        return slower
    if high < 1:  # type: ignore[operator]
        return faster
    return "no clear difference"


def _family_phrase(m: Measurements, family: str, numerator: str) -> str | None:
    parts = []
    for rtt in m.rtts:
        found = m.family_ratio(list(FAMILIES[family]), numerator, "logical", rtt)
        if found is not None:
            parts.append(f"{fmt_ratio_ci(found[0])} at {fmt_rtt(rtt)} ms")
    if not parts:
        return None
    return f"{family} {', '.join(parts)}"


def _versus_logical(m: Measurements) -> str:
    phrases = [p for family in FAMILIES if (p := _family_phrase(m, family, "proxy"))]
    if not phrases:
        return f"**Proxy against logical API**: {NOT_MEASURED}."
    cells = [m.ratio_interval(op, "proxy", "logical", rtt, m.reference_scale(op))
             for op in m.measured for rtt in m.rtts]
    cells = [c for c in cells if c is not None]
    slower = sum(verdict(c) == "slower" for c in cells)
    faster = sum(verdict(c) == "faster" for c in cells)
    text = ("**Proxy against logical API**: proxy ÷ logical p50 latency, geometric mean over "
            "each family's operations (95% interval in parentheses): " + "; ".join(phrases) + ". "
            f"Cell by cell the proxy is slower in {slower} and faster in {faster} of "
            f"{len(cells)} (operation, RTT) cells; in the rest the interval includes 1.")
    if BEST_MODE in m.modes:
        best = _family_phrase(m, "writes", BEST_MODE)
        if best:
            text += (f" With its opt-ins (`proxy_pipeline_dml`, `proxy_defer_flush_errors`) the "
                     f"proxy's {best.replace('writes ', 'writes are ', 1)} the logical API's.")
    return text


def _versus_direct(m: Measurements) -> str:
    cells = [(m.ratio_interval(op, "proxy", "direct", rtt, m.reference_scale(op)), op, rtt)
             for op in m.measured for rtt in m.rtts]
    cells = [(c, op, rtt) for c, op, rtt in cells if c is not None]
    if not cells:
        return f"**Proxy against a direct connection**: {NOT_MEASURED}."
    wins = [(c, op, rtt) for c, op, rtt in cells if verdict(c) == "faster"]
    losses = [(c, op, rtt) for c, op, rtt in cells if verdict(c) == "slower"]
    worst = max(losses, key=lambda item: item[0].estimate) if losses else None
    text = "**Proxy against a direct connection**: "
    if m.backend == "sqlite":
        text += ("on SQLite the direct connection is a file inside the client process (no "
                 "network), so this compares the proxy with no distance at all: ")
    text += (f"the proxy is slower in {len(losses)} and faster in {len(wins)} of {len(cells)} "
             "(operation, RTT) cells")
    if worst is not None:
        text += (f"; it loses most on `{worst[1]}` at {fmt_rtt(worst[2])} ms "
                 f"({fmt_ratio_ci(worst[0])} the direct p50)")
    if wins:
        best = min(wins, key=lambda item: item[0].estimate)
        rtts = sorted({rtt for _, _, rtt in wins})
        names = sorted({op for _, op, _ in wins})
        text += (f"; it wins on {', '.join(f'`{op}`' for op in names)} at "
                 f"{', '.join(fmt_rtt(r) for r in rtts)} ms RTT, most on `{best[1]}` at "
                 f"{fmt_rtt(best[2])} ms ({fmt_ratio_ci(best[0])})")
        if min(rtts) > 0 and m.backend != "sqlite":
            text += (": a direct connection pays one RTT per statement, the proxy pipelines "
                     "statements whose results nothing waits for")
    return text + "."


def _round_trips(m: Measurements) -> str:
    rtt = m.rtts[0] if m.rtts else None
    per_op = {}
    for op in m.measured:
        trips = m.value("round_trips", op, "proxy", rtt, m.reference_scale(op)) if rtt is not None \
            else None
        if trips is not None:
            per_op[op] = trips
    if not per_op:
        return f"**Round trips**: {NOT_MEASURED}."
    most = max(per_op, key=lambda op: (per_op[op], op))
    low, high = min(per_op.values()), max(per_op.values())
    text = (f"**Round trips**: through the proxy an operation takes {fmt_count(low)} to "
            f"{fmt_count(high)} HTTP round trips (median "
            f"{fmt_count(median(list(per_op.values())))}; most: `{most}`, "
            f"{fmt_count(per_op[most])}); through the logical API one.")
    direct = {op: trips for op in per_op
              if (trips := direct_round_trips(m, op, m.reference_scale(op))) is not None}
    if direct and transaction_overhead(m) is not None:
        text += (f" A direct connection makes {fmt_count(min(direct.values()))} to "
                 f"{fmt_count(max(direct.values()))} database round trips per operation (one per "
                 f"statement plus {fmt_count(transaction_overhead(m))} per transaction).")
    slopes = _slopes(m, most)
    if slopes:
        text += (f" Each costs one RTT: fitted against RTT, the p50 of `{most}` grows by "
                 + ", ".join(f"{fmt(s)} ms per ms of RTT {name}" for name, s in slopes) + ".")
    return text


def _slopes(m: Measurements, op: str) -> list[tuple[str, float]]:
    scale = m.reference_scale(op)
    found = []
    for mode in ("proxy", "logical"):
        points = [(rtt, to_ms(m.p50(op, mode, rtt, scale))) for rtt in m.rtts]
        points = [(x, y) for x, y in points if y is not None]
        if len({x for x, _ in points}) >= 2:
            fit = fit_line(points)  # type: ignore[arg-type]
            found.append((f"through the {MODE_NAMES[mode]}", fit.slope))
    return found


def _throughput(m: Measurements) -> str:
    if not m.throughput:
        return f"**Throughput**: {NOT_MEASURED}."
    clients = max(m.client_counts)
    parts = []
    for rtt in m.throughput_rtts:
        value = m.throughput_ratio("proxy", "logical", rtt, clients)
        if value is not None:
            parts.append(f"{fmt_ratio_ci(value)} at {fmt_rtt(rtt)} ms")
    if not parts:
        return f"**Throughput**: proxy against logical API {NOT_MEASURED}."
    runs = select(m.throughput, mode="proxy", clients=clients)
    repeated = len(runs) > len({r["rtt_ms"] for r in runs})
    processes = any(r.get("clients_are_processes") for r in m.throughput)
    return (f"**Throughput**: with {plural(clients, 'concurrent client')} "
            f"({'separate processes' if processes else 'threads of one process'}) looping over "
            "the light mix, the proxy's calls per second are " + "; ".join(parts)
            + " the logical API's" + ("." if repeated else " (one run per cell: no interval)."))


def security_reliability(results: dict[str, Any]) -> str:
    parts = []
    security = results.get("security")
    if security:
        attacks = security["attacks"]
        outcomes = {(o["attack"], o["config"]): o["stopped"] for o in security["outcomes"]}
        counts = {c: sum(outcomes[(a["name"], c)] for a in attacks) for c in security["configs"]}
        labels = {"proxy": "the proxy without a policy", "proxy+policy":
                  "the proxy with a learnt allowlist", "logical": "the logical API"}
        parts.append(f"of {plural(len(attacks), 'attack')}, "
                     + ", ".join(f"{labels.get(c, c)} stops {n}" for c, n in counts.items()))
    else:
        parts.append("the attack suite was not run")
    load = results.get("reliability")
    if load:
        inv = load["invariants"]
        relay = load.get("relay") or {}
        parts.append(
            f"under load ({load['ops']:,} calls by {plural(load['config']['clients'], 'client')}, "
            f"{relay.get('drop_response', 0):,} responses dropped by the relay) the transfer "
            + ("invariants held: no acknowledged write lost, none applied twice"
               if inv["violations"] == 0 else f"check found {inv['violations']} violations"))
    else:
        parts.append("the load run was not embedded (`run --load-results`)")
    return "**Security and reliability**: " + "; ".join(parts) + "."


def _headline_chart(m: Measurements) -> list[Block]:
    series: dict[str, list[tuple[float, float | None]]] = {}
    whiskers: dict[str, list[tuple[float, float, float]]] = {}
    for family, operations in FAMILIES.items():
        points, bars = [], []
        for rtt in m.rtts:
            found = m.family_ratio(list(operations), "proxy", "logical", rtt)
            if found is None:
                continue
            value = found[0]
            points.append((rtt, value.estimate))
            if value.has_interval:
                bars.append((rtt, value.low, value.high))
        if points:
            series[family] = points
            whiskers[family] = bars  # type: ignore[assignment]
    if not series:
        return [Paragraph(f"Proxy ÷ logical against RTT: {NOT_MEASURED}.")]
    title = "Proxy ÷ logical API, p50 latency, against RTT"
    svg = charts.line_chart(series, title=title, x_label="injected RTT (ms)",
                            y_label="proxy ÷ logical (geometric mean)",
                            colors=FAMILY_COLORS, intervals=whiskers,
                            reference=(1.0, "equal"))
    return [Figure("headline", title, svg,
                   "Proxy ÷ logical API p50 latency per operation family (geometric mean over "
                   "the family's operations at their reference scale), with 95% bootstrap "
                   "intervals; above the dashed line the proxy is slower.")]


def transaction_overhead(m: Measurements) -> float | None:
    """Database round trips a direct transaction adds to its statements (BEGIN, COMMIT),
    from the Targets' count of a one-row SELECT + COMMIT; None when not counted."""
    entry = (m.results.get("targets") or {}).get("db_round_trips")
    if not isinstance(entry, dict) or not entry.get("applicable", True) or not entry.get("direct"):
        return None
    return median([float(n) for n in entry["direct"]]) - 1


def direct_round_trips(m: Measurements, op: str, scale: int | None) -> float | None:
    """Database round trips of one direct call: its statements plus the transaction's
    overhead as counted by the Targets' relay, else the rounded slope of its mean latency
    against RTT; None on SQLite (no network) or when neither is known."""
    if m.backend == "sqlite":
        return None
    statements = m.value("statements", op, "direct", m.rtts[0], scale) if m.rtts else None
    overhead = transaction_overhead(m)
    if statements is not None and overhead is not None:
        return statements + overhead
    points = [(r, to_ms(m.value("mean", op, "direct", r, scale))) for r in m.rtts]
    points = [(x, y) for x, y in points if y is not None]
    if len(points) < 2:
        return None
    return float(max(round(fit_line(points).slope), 0))  # type: ignore[arg-type]


def _decomposition(m: Measurements, op: str, mode: str, rtt: float,
                   echo_overhead_ms: float | None) -> dict[str, float] | None:
    scale = m.reference_scale(op)
    cell = m.stat(op, mode, rtt, scale)
    if cell is None:
        return None
    total = to_ms(cell["mean"]) or 0.0
    if mode == "direct":
        trips = direct_round_trips(m, op, scale)
        network = 0.0 if trips is None else trips * rtt
        return {"network: round trips × RTT": network,
                "rest: the client (direct: client and database)": max(total - network, 0.0)}
    trips = cell["round_trips"] or 0.0
    network = trips * rtt
    overhead = trips * (echo_overhead_ms or 0.0)
    server = to_ms(cell["server_s"]) or 0.0
    return {"network: round trips × RTT": network,
            "per-request overhead: round trips × (HTTP echo − RTT)": overhead,
            "server: database work and its own code": server,
            "rest: the client (direct: client and database)":
                max(total - network - overhead - server, 0.0)}


def _decomposition_chart(m: Measurements) -> list[Block]:
    if not m.rtts:
        return []
    rtt = min(m.rtts, key=lambda r: (abs(r - DECOMPOSITION_RTT_MS), r))
    echo = p50_latency(select(m.floors, floor="http_echo", rtt_ms=rtt))
    echo_overhead = max(echo * 1000 - rtt, 0.0) if echo is not None else None
    categories: list[str] = []
    parts: dict[str, list[float | None]] = {name: [] for name in PART_COLORS}
    for op in DECOMPOSED:
        for mode in m.modes:
            split = _decomposition(m, op, mode, rtt, echo_overhead)
            if split is None:
                continue
            categories.append(f"{op} {mode}")
            for name in PART_COLORS:
                parts[name].append(split.get(name))
    if not categories:
        return [Paragraph(f"Latency decomposition: {NOT_MEASURED}.")]
    title = f"Where the time goes: mean latency at {fmt_rtt(rtt)} ms RTT"
    svg = charts.stacked_bar_chart(categories, parts, title=title, y_label="mean latency (ms)",
                                   colors=PART_COLORS, width=max(720, 62 * len(categories)))
    direct_note = (
        "Direct mode on SQLite has no network: its bar is the client's and the in-process "
        "database's time." if m.backend == "sqlite" else
        "Direct mode's round trips to the database are its statements plus the "
        f"{fmt_count(transaction_overhead(m))} more the Targets' relay counted in a one-row "
        "SELECT + COMMIT transaction (the transaction's own, such as BEGIN and COMMIT); the "
        "rest of its bar is the client's and the database's time."
        if transaction_overhead(m) is not None else
        "Direct mode's round trips to the database are the slope of its mean latency against "
        "RTT, rounded; the rest of its bar is the client's and the database's time.")
    overhead = ("not measured" if echo_overhead is None else
                f"{fmt(echo_overhead)} ms, the HTTP echo's p50 of {fmt_ms(echo)} ms less the RTT")
    return [Figure(f"decomposition-rtt-{fmt_rtt(rtt).replace('.', '-')}", title, svg,
                   "Mean latency of one read, one write and one scheduling step (at the scale "
                   f"closest to {REFERENCE_SCALE} tasks per DAG) per mode, split "
                   "into the round trips' network time (counted round trips × the injected "
                   f"RTT), their per-request overhead ({overhead}), the server's own time "
                   "(statements and, for the logical API, the operation's code) and the rest "
                   f"(client-side ORM, encoding and decoding). {direct_note}")]


def summary_section(m: Measurements) -> list[Block]:
    """Heading, the five findings, the headline chart and the decomposition chart."""
    blocks: list[Block] = [Heading(2, "Summary")]
    if not m.samples:
        return blocks + [Paragraph(f"No samples: summary {NOT_MEASURED}.")]
    blocks += [
        Paragraph("Five findings of this run. Ratios are of p50 latencies in the same cell "
                  "(operation, RTT, scale); the range in parentheses is the 95% bootstrap "
                  "interval (each mode's samples resampled independently"
                  + (", within their repetition" if any("repetition" in s for s in m.samples)
                     else "") + "); a ratio above 1 means the first-named mode is slower."),
        Bullets([_versus_logical(m), _versus_direct(m), _round_trips(m), _throughput(m),
                 security_reliability(m.results)]),
        *_headline_chart(m),
        *_decomposition_chart(m),
    ]
    return blocks
