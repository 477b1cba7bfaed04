"""The README's "Results so far" block, written from a results file, never by hand.

:func:`results_block` turns a results document into Markdown that says
where the proxy loses and where it wins, each with its number and 95%
interval (the same computations as the report's summary,
:mod:`.sections.summary`); :func:`update_readme` replaces the text between
:data:`BEGIN` and :data:`END` in a README with it.  ``session-proxy-bench
readme RESULTS README.md`` runs both, and a test checks that the committed
README holds exactly what the committed results give.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from .formatting import fmt_ratio, fmt_ratio_ci, fmt_rtt, hide_passwords, plural
from .measurements import Measurements
from .sections.summary import security_reliability, verdict
from .terms import BEST_MODE, FAMILIES

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"


def _family_cells(m: Measurements, numerator: str, denominator: str,
                  wanted: str) -> list[str]:
    out = []
    for family, operations in FAMILIES.items():
        parts = []
        for rtt in m.rtts:
            found = m.family_ratio(list(operations), numerator, denominator, rtt)
            if found is not None and verdict(found[0]) == wanted:
                parts.append(f"{fmt_ratio_ci(found[0])} at {fmt_rtt(rtt)} ms")
        if parts:
            out.append(f"{family} {', '.join(parts)}")
    return out


def _operation_cells(m: Measurements, numerator: str, denominator: str,
                     wanted: str) -> dict[str, list[tuple[float, Any]]]:
    cells: dict[str, list[tuple[float, Any]]] = {}
    for op in m.measured:
        scale = m.reference_scale(op)
        for rtt in m.rtts:
            value = m.ratio_interval(op, numerator, denominator, rtt, scale)
            if value is not None and verdict(value) == wanted:
                cells.setdefault(op, []).append((rtt, value))
    return cells


def _operations_phrase(cells: dict[str, list[tuple[float, Any]]]) -> str:
    return "; ".join(f"`{op}` " + ", ".join(f"{fmt_ratio_ci(v)} at {fmt_rtt(r)} ms"
                                             for r, v in found)
                     for op, found in cells.items())


def _throughput_cells(m: Measurements, wanted: str) -> list[str]:
    if not m.throughput:
        return []
    clients = max(m.client_counts)
    found = []
    for rtt in m.throughput_rtts:
        value = m.throughput_ratio("proxy", "logical", rtt, clients)
        if value is None:
            continue
        decided = verdict(value)
        if not value.has_interval:
            decided = "slower" if value.estimate < 1 else "faster"
            if decided == wanted:
                found.append(f"{fmt_ratio(value.estimate)} at {fmt_rtt(rtt)} ms (one run: "
                             "no interval)")
        elif decided == ("faster" if wanted == "slower" else "slower"):
            # Throughput is the other way round: a ratio below 1 means fewer calls/s.
            found.append(f"{fmt_ratio_ci(value)} at {fmt_rtt(rtt)} ms")
    return found


def _loses(m: Measurements) -> list[str]:
    items = []
    families = _family_cells(m, "proxy", "logical", "slower")
    if families:
        items.append("Against the logical API, proxy ÷ logical p50 (geometric mean per "
                     "operation family): " + "; ".join(families) + ".")
    direct = _operation_cells(m, "proxy", "direct", "slower")
    if direct:
        worst = max(((op, r, v) for op, found in direct.items() for r, v in found),
                    key=lambda item: item[2].estimate)
        items.append(f"Against a direct connection it is slower in "
                     f"{sum(map(len, direct.values()))} (operation, RTT) cells, most for "
                     f"`{worst[0]}` at {fmt_rtt(worst[1])} ms: {fmt_ratio_ci(worst[2])}"
                     + (" (SQLite: the direct database is in the client's process)."
                        if m.backend == "sqlite" else "."))
    throughput = _throughput_cells(m, "slower")
    if throughput:
        items.append(f"Throughput with {plural(max(m.client_counts), 'client')}, proxy ÷ "
                     "logical calls per second: " + "; ".join(throughput) + ".")
    return items


def _wins(m: Measurements) -> list[str]:
    items = []
    logical = _operation_cells(m, "proxy", "logical", "faster")
    if logical:
        items.append("Against the logical API, with the whole interval below 1: "
                     + _operations_phrase(logical) + ".")
    direct = _operation_cells(m, "proxy", "direct", "faster")
    if direct:
        items.append("Against a direct connection, which pays one RTT per statement: "
                     + _operations_phrase(direct) + ".")
    if BEST_MODE in m.modes:
        best = _family_cells(m, BEST_MODE, "proxy", "faster")
        if best:
            items.append("With its opt-ins (`proxy_best` ÷ `proxy`): " + "; ".join(best) + ".")
    throughput = _throughput_cells(m, "faster")
    if throughput:
        items.append(f"Throughput with {plural(max(m.client_counts), 'client')}, proxy ÷ "
                     "logical calls per second: " + "; ".join(throughput) + ".")
    return items or ["No measured cell where the proxy is faster with its whole 95% "
                     "interval below 1."]


def results_block(results: dict[str, Any], report_link: str, command: str) -> str:
    """The block's Markdown (markers included) for ``results``.

    ``report_link`` is the report's path relative to the README; ``command``
    is the command that writes this block, shown in it.
    """
    m = Measurements(results)
    env = m.environment
    commit = env.get("git_commit") or env.get("commit")
    run = hide_passwords(shlex.join(str(a) for a in results.get("command") or [])) \
        or "not recorded"
    lines = [
        BEGIN,
        f"<!-- written by `{command}`; edit the generator, not this block -->",
        "",
        f"[{report_link}]({report_link}) (and `report.html`) is the committed run, made on "
        f"{env.get('backend', 'an unrecorded backend')} {env.get('backend_version', '')}".rstrip()
        + f" with `{run}`" + (f" at commit `{commit}`" if commit else "") + ". Ratios are of "
        "p50 latencies in the same cell; in parentheses the 95% bootstrap interval. Where the "
        "proxy loses:",
        "",
        *(f"- {item}" for item in _loses(m) or ["No measured cell where the proxy is slower "
                                                 "with its whole 95% interval above 1."]),
        "",
        "Where the proxy wins:",
        "",
        *(f"- {item}" for item in _wins(m)),
        "",
        security_reliability(results).replace("**", ""),
        "",
        END,
    ]
    return "\n".join(lines)


def update_readme(readme: Path, block: str) -> bool:
    """Put ``block`` between the markers of ``readme``; True if the file changed.

    Raises :class:`ValueError` when the README lacks the markers.
    """
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} has no {BEGIN} ... {END} block")
    updated = text[:start] + block + text[end + len(END):]
    if updated == text:
        return False
    readme.write_text(updated, encoding="utf-8")
    return True


def report_link(results_path: Path, readme: Path) -> str:
    """The report next to ``results_path``, relative to the README's directory."""
    target = Path(results_path).parent / "report.md"
    return Path(os.path.relpath(target, Path(readme).parent)).as_posix()
