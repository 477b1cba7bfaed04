"""The report's "Findings" section: what the measurements say, mode against mode.

An overall sentence, then per RTT the headline operation, the pairwise
comparisons and the throughput at the most clients; then the ratio tables
and the least-squares break-even RTT of proxy against logical.  The ratio
tables (:func:`ratio_table`) are reused by the answers section.
"""

from __future__ import annotations

from ...stats import break_even, linear_fit, median, ratio
from ..document import Block, Bullets, Heading, Paragraph, Table
from ..formatting import (
    NOT_MEASURED,
    compared,
    fmt,
    fmt_count,
    fmt_ms,
    fmt_percent,
    fmt_ratio,
    fmt_rtt,
    to_ms,
)
from ..measurements import Measurements
from ..terms import HEADLINE, MODE_NAMES, MODES, REFERENCE_SCALE


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


def ratio_table(m: Measurements, numerator: str, denominator: str,
                field: str = "p50") -> Table:
    """``numerator ÷ denominator`` of one summary field, per operation/scale and RTT."""
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


def _no_break_even(pairs: list[tuple[float, float, float]], crossing: float | None,
                   span: str) -> str:
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
    return text


def break_even_verdict(m: Measurements, op: str, scale: int | None) -> tuple[str, str, str]:
    """Fitted proxy and logical lines of p50 (ms) over RTT (ms) and where they cross."""
    measured = [(rtt, to_ms(m.p50(op, "proxy", rtt, scale)),
                 to_ms(m.p50(op, "logical", rtt, scale))) for rtt in m.rtts]
    pairs = [(r, p, q) for r, p, q in measured if p is not None and q is not None]
    if len(pairs) < 2:
        return NOT_MEASURED, NOT_MEASURED, (
            f"{NOT_MEASURED}: needs at least two RTTs measured in both proxy and logical mode")
    proxy_points = [(r, p) for r, p, _ in pairs]
    logical_points = [(r, q) for r, _, q in pairs]
    (pa, pb), (la, lb) = linear_fit(proxy_points), linear_fit(logical_points)
    fits = (f"{fmt(pa)} + {fmt(pb)} × RTT", f"{fmt(la)} + {fmt(lb)} × RTT")
    low, high = pairs[0][0], pairs[-1][0]
    crossing = break_even(proxy_points, logical_points)
    if crossing is not None and low <= crossing <= high:
        below, above = ("proxy", "logical") if pb > lb else ("logical", "proxy")
        return fits[0], fits[1], (f"break-even at {fmt(crossing)} ms RTT: below it the "
                                  f"{MODE_NAMES[below]} is faster, above it the "
                                  f"{MODE_NAMES[above]}")
    span = f"{fmt_rtt(low)}–{fmt_rtt(high)} ms"
    return fits[0], fits[1], _no_break_even(pairs, crossing, span)


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


def _break_even(m: Measurements) -> list[Block]:
    rows, crossings = [], []
    for op in m.measured:
        for scale in m.scales(op):
            proxy_fit, logical_fit, verdict = break_even_verdict(m, op, scale)
            rows.append([f"`{m.label(op, scale)}`", proxy_fit, logical_fit, verdict])
            if verdict.startswith("break-even"):
                crossings.append(f"`{m.label(op, scale)}`")
    return [
        Table(["operation", "proxy p50 (ms)", "logical p50 (ms)", "verdict"], rows),
        Paragraph(f"A break-even RTT inside the measured range exists for {len(crossings)} of "
                  f"{len(rows)} operation/scale pairs"
                  + (f": {', '.join(crossings)}." if crossings else ".")),
    ]


def findings_section(m: Measurements) -> list[Block]:
    """Heading, overall sentence, per-RTT findings, ratio tables and break-even table."""
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
        Heading(3, "Proxy ÷ logical, p50 latency"), ratio_table(m, "proxy", "logical"),
        Heading(3, "Proxy ÷ direct, p50 latency"), ratio_table(m, "proxy", "direct"),
        Heading(3, "Logical ÷ direct, p50 latency"), ratio_table(m, "logical", "direct"),
        Heading(3, "Break-even RTT, proxy against logical"),
        Paragraph("Least-squares lines of p50 latency (ms) over injected RTT (ms) for each "
                  "mode; the break-even RTT is where they cross (`stats.break_even`)."),
        *_break_even(m),
    ]
    return blocks
