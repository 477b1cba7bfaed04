"""The report's "Findings" section: what the measurements say, mode against mode.

An overall sentence, then per RTT the headline operation, the pairwise
comparisons and the throughput at the most clients; then the ratio tables
(each ratio with its 95% bootstrap interval) and the least-squares lines of
p50 against RTT of proxy and logical.  A line is only used where it fits
(rising, R² of at least :data:`MIN_R_SQUARED`), and a break-even RTT is only
stated when both lines fit, they cross inside the measured range and the
measured faster mode really changes across it; otherwise the table says
"no break-even in the measured range".  The ratio tables
(:func:`ratio_table`) are reused by the answers section.
"""

from __future__ import annotations

from ...stats import LinearFit, fit_line, median, ratio
from ..document import Block, Bullets, Heading, Paragraph, Table
from ..formatting import (
    NOT_MEASURED,
    compared,
    fmt,
    fmt_count,
    fmt_ms,
    fmt_ms_ci,
    fmt_percent,
    fmt_ratio,
    fmt_ratio_ci,
    fmt_rtt,
    to_ms,
)
from ..measurements import Measurements
from ..terms import BEST_MODE, HEADLINE, MODE_NAMES, REFERENCE_SCALE

#: A line fits when it explains at least this share of the variance.
MIN_R_SQUARED = 0.9


def _ratio_rows(m: Measurements, numerator: str, denominator: str,
                statistic: str = "p50") -> list[list[str]]:
    rows = []
    for op in m.measured:
        for scale in m.scales(op):
            rows.append([f"`{m.label(op, scale)}`"] + [
                fmt_ratio_ci(m.ratio_interval(op, numerator, denominator, rtt, scale, statistic))
                for rtt in m.rtts])
    return rows


def ratio_table(m: Measurements, numerator: str, denominator: str,
                statistic: str = "p50") -> Table:
    """``numerator ÷ denominator`` of one statistic (``p50``, ``txn_s``, ...), per
    operation/scale and RTT, each with its 95% bootstrap interval."""
    return Table(["operation", *(f"{fmt_rtt(r)} ms" for r in m.rtts)],
                 _ratio_rows(m, numerator, denominator, statistic))


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
    versus = m.ratio_interval(HEADLINE, "proxy", "logical", rtt, scale)
    interval = (f", 95% interval {fmt_ratio(versus.low)}–{fmt_ratio(versus.high)}"
                if versus is not None and versus.has_interval else "")
    text = (f"`{m.label(HEADLINE, scale)}` is {compared(ratio(proxy['p50'], logical['p50']))} "
            f"through the proxy than through the logical API (p50 "
            f"{fmt_ms_ci(m.interval('p50', HEADLINE, 'proxy', rtt, scale))} ms against "
            f"{fmt_ms_ci(m.interval('p50', HEADLINE, 'logical', rtt, scale))} ms{interval}; "
            f"{fmt_count(proxy['round_trips'])} round trips against "
            f"{fmt_count(logical['round_trips'])})")
    txn = ratio(proxy["txn_s"], logical["txn_s"])
    if txn is not None:
        text += (f"; it holds the transaction {_lock_phrase(m)} "
                 f"{compared(txn, 'longer', 'shorter')} (mean {fmt_ms(proxy['txn_s'])} ms "
                 f"against {fmt_ms(logical['txn_s'])} ms)")
    return text + "."


def _comparison(m: Measurements, rtt: float, first: str, second: str) -> str:
    pairs, cells = [], {}
    for op in m.measured:
        scale = m.reference_scale(op)
        cell = m.ratio_interval(op, first, second, rtt, scale)
        if cell is not None:
            pairs.append((cell.estimate, op))
            cells[op] = cell
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
               f"worst `{worst[1]}` at {fmt_ratio_ci(cells[worst[1]])}, best `{best[1]}` at "
               f"{fmt_ratio_ci(cells[best[1]])}).")
    if not slower:
        summary = (f"The {one} is not slower than the {two} in any of the {len(pairs)} "
                   f"operations measured in both (median ratio {middle}).")
    return summary


def _throughput_finding(m: Measurements, rtt: float) -> str | None:
    if rtt not in m.throughput_rtts:
        return None
    clients = max(m.client_counts)
    runs = {mode: m.throughput_run(mode, rtt, clients) for mode in m.modes}
    parts = [f"{mode} {fmt(run['throughput'])} calls/s (p99 {fmt_ms(run.get('p99_s'))} ms)"
             if run else f"{mode} {NOT_MEASURED}" for mode, run in runs.items()]
    text = f"With {clients} concurrent clients: " + "; ".join(parts) + "."
    value = m.throughput_ratio("proxy", "logical", rtt, clients)
    if value is not None:
        change = (f"{fmt_percent(1 - value.estimate)} less" if value.estimate < 1
                  else f"{fmt_percent(value.estimate - 1)} more")
        text += (f" The proxy's throughput is {fmt_ratio_ci(value)} the logical API's "
                 f"({change}" + ("" if value.has_interval else "; one run: no interval")
                 + ").")
    return text


def fits(fit: LinearFit) -> bool:
    """Whether a line of latency against RTT is worth stating: rising, and a good fit."""
    return fit.slope > 0 and fit.r_squared >= MIN_R_SQUARED


def describe_fit(fit: LinearFit) -> str:
    """``"1.20 + 3.05 × RTT (R² 0.998, largest residual 0.21 ms)"``, or why no line fits."""
    quality = f"R² {fit.r_squared:.3f}, largest residual {fmt(fit.max_residual)} ms"
    if not fits(fit):
        reason = "not rising" if fit.slope <= 0 else f"R² below {MIN_R_SQUARED}"
        return f"no line fits ({reason}: {quality})"
    return f"{fmt(fit.intercept)} + {fmt(fit.slope)} × RTT ({quality})"


def _winners(pairs: list[tuple[float, float, float]]) -> str:
    return ", ".join(f"{'proxy' if p < q else 'logical'} at {fmt_rtt(r)} ms" for r, p, q in pairs)


def break_even_verdict(m: Measurements, op: str, scale: int | None) -> tuple[str, str, str]:
    """Fitted proxy and logical lines of p50 (ms) over RTT (ms), and where they cross."""
    measured = [(rtt, to_ms(m.p50(op, "proxy", rtt, scale)),
                 to_ms(m.p50(op, "logical", rtt, scale))) for rtt in m.rtts]
    pairs = [(r, p, q) for r, p, q in measured if p is not None and q is not None]
    if len(pairs) < 2:
        return NOT_MEASURED, NOT_MEASURED, (
            f"{NOT_MEASURED}: needs at least two RTTs measured in both proxy and logical mode")
    proxy = fit_line([(r, p) for r, p, _ in pairs])
    logical = fit_line([(r, q) for r, _, q in pairs])
    low, high = pairs[0][0], pairs[-1][0]
    span = f"{fmt_rtt(low)}–{fmt_rtt(high)} ms"
    first_faster = "proxy" if pairs[0][1] < pairs[0][2] else "logical"
    last_faster = "proxy" if pairs[-1][1] < pairs[-1][2] else "logical"
    crossing = None
    if fits(proxy) and fits(logical) and proxy.slope != logical.slope:
        crossing = (logical.intercept - proxy.intercept) / (proxy.slope - logical.slope)
    if crossing is not None and low < crossing < high and first_faster != last_faster:
        return describe_fit(proxy), describe_fit(logical), (
            f"break-even at {fmt(crossing)} ms RTT: below it the {MODE_NAMES[first_faster]} is "
            f"faster, above it the {MODE_NAMES[last_faster]} (measured: {_winners(pairs)})")
    if first_faster == last_faster and all(
            ("proxy" if p < q else "logical") == first_faster for _, p, q in pairs):
        why = f"the {MODE_NAMES[first_faster]} is faster at every measured RTT"
    elif fits(proxy) and fits(logical):
        why = (f"the faster mode changes between RTTs ({_winners(pairs)}) but the fitted lines "
               "do not cross inside the range")
    else:
        why = (f"the faster mode changes between RTTs ({_winners(pairs)}) and no straight line "
               "fits both modes well enough to place a crossing")
    return describe_fit(proxy), describe_fit(logical), (
        f"no break-even in the measured range ({span}): {why}")


def _overall(m: Measurements) -> str:
    """One sentence over every cell measured in both proxy and logical mode."""
    cells = [m.ratio_interval(op, "proxy", "logical", rtt, scale)
             for op in m.measured for scale in m.scales(op) for rtt in m.rtts]
    cells = [c for c in cells if c is not None]
    if not cells:
        return f"**In short**: proxy against logical API {NOT_MEASURED}."
    values = [c.estimate for c in cells]
    slower = sum(v > 1 for v in values)
    clearly = sum(c.has_interval and c.low > 1 for c in cells)  # type: ignore[operator]
    text = (f"**In short**: the proxy was slower than the logical API in {slower} of the "
            f"{len(values)} (operation, scale, RTT) cells measured in both modes ({clearly} "
            f"with the whole 95% interval above 1); its p50 latency ranged from "
            f"{fmt_ratio(min(values))} to {fmt_ratio(max(values))} the logical API's (median "
            f"{fmt_ratio(median(values))}).")
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
        Table(["operation", "proxy p50 (ms), fitted", "logical p50 (ms), fitted", "verdict"],
              rows),
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
                  "mode is slower. In parentheses: the 95% percentile-bootstrap interval "
                  "(each mode's samples resampled independently; none for a cell of one "
                  "sample). Summaries use each operation at the scale closest to "
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
        *([Heading(3, "Proxy (best case) ÷ logical, p50 latency"),
           ratio_table(m, BEST_MODE, "logical"),
           Heading(3, "Proxy (best case) ÷ proxy (defaults), p50 latency"),
           ratio_table(m, BEST_MODE, "proxy")] if BEST_MODE in m.modes else []),
        Heading(3, "Proxy ÷ direct, p50 latency"), ratio_table(m, "proxy", "direct"),
        Heading(3, "Logical ÷ direct, p50 latency"), ratio_table(m, "logical", "direct"),
        Heading(3, "Break-even RTT, proxy against logical"),
        Paragraph("Least-squares lines of p50 latency (ms) over injected RTT (ms) for each "
                  f"mode, with R² and the largest residual. A line is stated only when it "
                  f"rises and R² is at least {MIN_R_SQUARED}; a break-even RTT only when both "
                  "lines fit, they cross inside the measured range and the faster mode "
                  "measured at the lowest RTT differs from the one at the highest."),
        *_break_even(m),
    ]
    return blocks
