"""The second edition's reading order and honesty rules, on synthetic results.

The results come from :func:`tests.bench.test_report.make_results` (latencies
that follow known formulas), so what the summary must say is derived here:
the summary and its five findings come first, then the contents (whose links
resolve to the headings' anchors in the HTML), then the details; an
in-process SQLite direct mode is not drawn against RTT; ``proxy_best`` gets
its own columns; the statement difference of logical writes is explained.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from session_proxy_bench import report
from session_proxy_bench.report.anchors import heading_anchors, slug
from tests.bench.test_report import LATENCY_MS, RTTS_MS, TXN_MS, make_results


def _write(results: dict, out: Path) -> tuple[str, str]:
    markdown, page = report.write_report(results, out)
    return markdown.read_text(), page.read_text()


def _headings(md: str) -> list[str]:
    return [line[3:] for line in md.splitlines() if line.startswith("## ")]


def test_summary_comes_first_then_contents_then_details(tmp_path: Path) -> None:
    md, _ = _write(make_results(), tmp_path)
    headings = _headings(md)
    assert headings[:3] == ["Summary", "Contents", "Method"]
    assert headings[-1] == "Threats to validity"
    summary = md.split("## Summary", 1)[1].split("## Contents", 1)[0]
    findings = [line for line in summary.splitlines() if line.startswith("- **")]
    assert [re.match(r"- \*\*([^*]+)\*\*", f)[1] for f in findings] == [
        "Proxy against logical API", "Proxy against a direct connection", "Round trips",
        "Throughput", "Security and reliability"]
    assert "![Proxy ÷ logical API, p50 latency, against RTT](chart-headline.svg)" in summary
    assert "chart-decomposition-rtt-5.svg" in summary
    # The command that produced the report is named before the summary.
    assert md.index("session-proxy-bench run --db") < md.index("## Summary")


def test_summary_numbers_are_computed(tmp_path: Path) -> None:
    md, _ = _write(make_results(), tmp_path)
    summary = md.split("## Summary", 1)[1].split("## Contents", 1)[0]
    # Reads are get_dag_run only here, at its single scale 10: its ratio at each RTT.
    for rtt in RTTS_MS:
        expected = LATENCY_MS["proxy"](rtt, 10) / LATENCY_MS["logical"](rtt, 10)
        assert re.search(rf"reads .*{re.escape(report.fmt_ratio(expected))} \([0-9.]+×–"
                         rf"[0-9.]+×\) at {report.fmt_rtt(rtt)} ms", summary)
    # Round trips: statements + 1 through the proxy (see make_results), one logical call.
    assert "an operation takes 2 to 6 HTTP round trips" in summary
    # The fitted slope of mini_scheduler's p50 against RTT is the formulas' 6 and 1.
    assert "grows by 6.00 ms per ms of RTT through the proxy, 1.00 ms per ms of RTT " \
           "through the logical API" in summary
    assert "the attack suite was not run" in summary


def test_contents_links_resolve_to_heading_anchors(tmp_path: Path) -> None:
    md, page = _write(make_results(), tmp_path)
    links = re.findall(r"^ *- \[[^\]]+\]\(#([^)]+)\)$", md, re.M)
    assert len(links) > 20 and len(set(links)) == len(links)
    ids = set(re.findall(r'<h[1-6] id="([^"]+)"', page))
    hrefs = re.findall(r'<a href="#([^"]+)"', page)
    assert set(links) == set(hrefs) and set(hrefs) <= ids
    # GitHub's rules: punctuation dropped, spaces to hyphens, repeats numbered.
    assert slug("Proxy ÷ logical, p50 latency") == "proxy--logical-p50-latency"
    assert slug("`mini_scheduler`") == "mini_scheduler"
    blocks = [report.Heading(2, "Findings"), report.Heading(3, "Findings")]
    assert list(heading_anchors(blocks).values()) == ["findings", "findings-1"]


def test_sqlite_direct_mode_is_not_drawn_against_rtt(tmp_path: Path) -> None:
    results = make_results()
    results["environment"]["backend"] = "sqlite"
    md, _ = _write(results, tmp_path)
    chart = (tmp_path / "chart-latency-rtt-get-dag-run.svg").read_text()
    assert ">direct<" not in chart and ">proxy<" in chart
    assert "Direct mode is not drawn: on SQLite it is a file inside the client process" in md
    # Networked databases keep the direct line.
    _write(make_results(), tmp_path / "pg")
    assert ">direct<" in (tmp_path / "pg" / "chart-latency-rtt-get-dag-run.svg").read_text()


def test_best_case_mode_is_shown_beside_the_defaults(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TXN_MS, "proxy_best", TXN_MS["proxy"])
    best = {"proxy_best": lambda rtt, scale: 1.0 + 0.01 * scale + 3.0 * rtt}
    results = make_results(modes=("direct", "proxy", "proxy_best", "logical"),
                           latency=dict(LATENCY_MS, **best))
    md, _ = _write(results, tmp_path)
    assert "### Proxy (best case) ÷ logical, p50 latency" in md
    assert "### Proxy (best case) ÷ proxy (defaults), p50 latency" in md
    assert "**proxy_best**: the proxy with the two opt-ins" in md
    assert "| proxy_best | 0 | 10 | 5 |" in md
    assert "ran in 4 modes" in md
    _write(make_results(), tmp_path / "three")
    assert "proxy_best" not in (tmp_path / "three" / "report.md").read_text()


def test_statement_difference_of_logical_writes_is_explained(tmp_path: Path) -> None:
    results = make_results()
    for sample in results["samples"]:
        if sample["mode"] == "logical" and sample["operation"] in report.WRITE_OPERATIONS:
            sample["statements"] += 1
    md, _ = _write(results, tmp_path)
    assert ("Statements per call, logical API minus direct: +1 for the 3 write operations and "
            "+0 for the 1 read operation. The difference is the call's idempotency record") in md


def test_targets_use_plurals(tmp_path: Path) -> None:
    results = make_results()
    results["probes"] = [{"probe": "flush", "mode": "proxy", "rtt_ms": 0.0, "n": n,
                          "round_trips": 1, "latency_s": 0.001} for n in (1, 10000)]
    md, _ = _write(results, tmp_path)
    assert "add 1 object with client-side keys" in md
    assert "add 10,000 objects with client-side keys" in md
    assert "add 1 objects" not in md


def test_direct_round_trips_use_the_counted_transaction_overhead(tmp_path: Path) -> None:
    results = make_results()
    results["targets"] = {"db_round_trips": {"applicable": True, "direct": [3, 3, 3],
                                             "proxy": [3, 3, 3]}}
    md, _ = _write(results, tmp_path)
    # Statements per operation are 1 to 5 (make_results), plus BEGIN and COMMIT counted.
    assert ("A direct connection makes 3 to 7 database round trips per operation (one per "
            "statement plus 2 per transaction).") in md
    assert "its statements plus the 2 more the Targets' relay counted" in md
