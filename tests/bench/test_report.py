"""The report generator, its SVG charts and the stats helpers it added.

Every test builds a synthetic results document whose latencies follow known
formulas (proxy = 1 ms + 6 x RTT, logical = 3 ms + 1 x RTT, ...), so the
statements the report must make are derived here from the same formulas.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from session_proxy_bench import charts, report
from session_proxy_bench.stats import median, nearest, percentile

RTTS_MS = [0.0, 1.0, 2.0, 5.0]
SCALES = [10, 100]
OPERATIONS = ["get_dag_run", "heartbeat", "mini_scheduler", "create_dag_run"]
SCALED = {"mini_scheduler", "create_dag_run"}
STATEMENTS = {"get_dag_run": 1, "heartbeat": 2, "mini_scheduler": 5, "create_dag_run": 4}
CLIENTS = [1, 4]
#: Relative spread of a cell's samples around its p50 (odd count: the middle one is exact).
SPREAD = [0.98, 0.99, 1.0, 1.01, 1.02]

Formula = Callable[[float, int], float]

#: p50 latency in ms of each mode at (rtt_ms, tasks_per_dag).
LATENCY_MS: dict[str, Formula] = {
    "direct": lambda rtt, scale: 0.5 + 0.01 * scale,
    "proxy": lambda rtt, scale: 1.0 + 0.01 * scale + 6.0 * rtt,
    "logical": lambda rtt, scale: 3.0 + 0.01 * scale + 1.0 * rtt,
}
#: Mean transaction-open time in ms.
TXN_MS: dict[str, Formula] = {
    "direct": lambda rtt, scale: 0.2,
    "proxy": lambda rtt, scale: 0.5 + 5.0 * rtt,
    "logical": lambda rtt, scale: 0.3,
}


def _sample(op: str, mode: str, rtt: float, scale: int, factor: float,
            latency_ms: dict[str, Formula]) -> dict[str, Any]:
    statements = STATEMENTS[op]
    latency = latency_ms[mode](rtt, scale) * factor / 1000
    remote = mode != "direct"
    return {
        "operation": op,
        "mode": mode,
        "rtt_ms": rtt,
        "tasks_per_dag": scale,
        "latency_s": latency,
        "round_trips": None if not remote else (statements + 1 if mode == "proxy" else 1),
        "request_bytes": 0 if not remote else (300 * statements if mode == "proxy" else 80),
        "response_bytes": 0 if not remote else (500 * statements if mode == "proxy" else 120),
        "statements": statements,
        "server_s": latency / 4 if remote else None,
        "txn_s": TXN_MS[mode](rtt, scale) / 1000,
    }


def make_results(modes: tuple[str, ...] = ("direct", "proxy", "logical"),
                 latency: dict[str, Formula] | None = None,
                 operations: list[str] = OPERATIONS) -> dict[str, Any]:
    """A results document like the runner's, from the formulas above."""
    formulas = dict(LATENCY_MS, **(latency or {}))
    samples = [
        _sample(op, mode, rtt, scale, factor, formulas)
        for scale in SCALES for rtt in RTTS_MS for mode in modes for op in operations
        if scale == SCALES[0] or op in SCALED
        for factor in SPREAD
    ]
    floors = [
        {"floor": floor, "rtt_ms": rtt, "latency_s": value / 1000}
        for rtt in RTTS_MS
        for floor, value in (("db_select_1", 0.1), ("http_echo", 0.5 + rtt))
    ]
    throughput = [
        {"mode": mode, "clients": clients, "rtt_ms": rtt, "operations": 100 * clients,
         "seconds": 1.0, "throughput": 1000 * clients / formulas[mode](rtt, 10),
         "p50_s": formulas[mode](rtt, 10) / 1000, "p99_s": 2 * formulas[mode](rtt, 10) / 1000,
         "errors": {}}
        for rtt in RTTS_MS for mode in modes for clients in CLIENTS
    ]
    return {
        "format": 1,
        "command": ["session-proxy-bench", "run", "--db",
                    "postgresql+psycopg://bench:s3cret@db.example/test"],
        "config": {"db": "postgresql+psycopg://bench:s3cret@db.example/test",
                   "operations": operations, "modes": list(modes),
                   "rtts": [r / 1000 for r in RTTS_MS], "scales": SCALES, "clients": CLIENTS,
                   "samples": len(SPREAD), "warmup": 2, "floor_samples": 1,
                   "throughput_seconds": 1.0, "dags": 2, "runs_per_dag": 3},
        "environment": {"cpu": "test cpu", "cores": 2, "backend": "postgresql",
                        "driver": "psycopg", "python": "3.11"},
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:10:00+00:00",
        "samples": samples,
        "floors": floors,
        "throughput": throughput,
    }


@pytest.fixture
def written(tmp_path: Path) -> tuple[str, str, Path]:
    markdown, page = report.write_report(make_results(), tmp_path)
    return markdown.read_text(), page.read_text(), tmp_path


# --- the report's statements -------------------------------------------------------------


def test_headline_ratio_at_each_rtt(written: tuple[str, str, Path]) -> None:
    md, _, _ = written
    scale = nearest(SCALES, report.REFERENCE_SCALE)
    for rtt in RTTS_MS:
        proxy = LATENCY_MS["proxy"](rtt, scale)
        logical = LATENCY_MS["logical"](rtt, scale)
        expected = report.compared(proxy / logical)
        assert f"`mini_scheduler ({scale} tasks/DAG)` is {expected} through the proxy" in md
        txn = report.compared(TXN_MS["proxy"](rtt, scale) / TXN_MS["logical"](rtt, scale),
                              "longer", "shorter")
        assert f"holds the transaction (and so the `dag_run` row lock) {txn}" in md


def test_break_even_matches_the_formulas(written: tuple[str, str, Path]) -> None:
    md, _, _ = written
    # proxy a1 + b1*rtt meets logical a2 + b2*rtt at (a2 - a1) / (b1 - b2); the scale
    # term is the same in both modes, so every operation crosses at the same RTT.
    expected = (3.0 - 1.0) / (6.0 - 1.0)
    found = [float(x) for x in re.findall(r"break-even at ([0-9.]+) ms RTT", md)]
    assert len(found) == len(OPERATIONS) + len(SCALED) * (len(SCALES) - 1)
    assert all(x == pytest.approx(expected, abs=1e-3) for x in found)
    assert f"break-even at {report.fmt(expected)} ms RTT: below it the proxy is faster, " \
           "above it the logical API" in md


def _interval_cell(cell: str) -> tuple[str, float, float]:
    """``"1.93× (1.80×–2.05×)"`` -> ("1.93×", 1.80, 2.05)."""
    match = re.fullmatch(r"(\S+×) \(([0-9.]+)×–([0-9.]+)×\)", cell)
    assert match, cell
    return match[1], float(match[2]), float(match[3])


def test_ratio_tables_hold_computed_ratios_with_intervals(
        written: tuple[str, str, Path]) -> None:
    md, _, _ = written
    row = next(line for line in md.splitlines() if line.startswith("| `get_dag_run` | "))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert len(cells) == len(RTTS_MS)
    for rtt, cell in zip(RTTS_MS, cells, strict=True):
        expected = LATENCY_MS["proxy"](rtt, 10) / LATENCY_MS["logical"](rtt, 10)
        shown, low, high = _interval_cell(cell)
        assert shown == report.fmt_ratio(expected)
        # Both cells spread ±2% around their p50, so the ratio moves by at most ~4%.
        assert low <= float(shown[:-1]) <= high
        assert expected / 1.05 <= low and high <= expected * 1.05
        assert low < high


def test_no_break_even_says_which_mode_wins(tmp_path: Path) -> None:
    # proxy = 5 + 6*rtt, logical = 3 + rtt: the lines would cross at (3-5)/5 < 0.
    results = make_results(latency={"proxy": lambda rtt, scale: 5.0 + 6.0 * rtt,
                                    "logical": lambda rtt, scale: 3.0 + 1.0 * rtt})
    md = report.write_report(results, tmp_path)[0].read_text()
    span = f"{report.fmt_rtt(RTTS_MS[0])}–{report.fmt_rtt(RTTS_MS[-1])} ms"
    assert (f"no break-even in the measured range ({span}): the logical API is faster at every "
            "measured RTT") in md
    assert "break-even at" not in md
    assert "No measured cell favours the proxy." in md


def test_crossing_outside_the_range_is_reported_as_such(tmp_path: Path) -> None:
    results = make_results(latency={"logical": lambda rtt, scale: 40.0 + 1.0 * rtt})
    md = report.write_report(results, tmp_path)[0].read_text()
    proxy_intercept = LATENCY_MS["proxy"](0.0, SCALES[0])
    proxy_slope = LATENCY_MS["proxy"](1.0, SCALES[0]) - proxy_intercept
    crossing = (40.0 - proxy_intercept) / (proxy_slope - 1.0)
    assert crossing > RTTS_MS[-1]
    assert "no break-even in the measured range (0–5 ms): the proxy is faster at every " \
           "measured RTT" in md
    assert "break-even at" not in md and report.fmt(crossing) not in md


def test_a_falling_or_scattered_line_is_not_stated_as_a_fit(tmp_path: Path) -> None:
    # The proxy gets faster with RTT (impossible for a real network): no line, no crossing.
    results = make_results(latency={"proxy": lambda rtt, scale: 31.0 - 0.25 * rtt,
                                    "logical": lambda rtt, scale: 3.0 + 6.0 * rtt})
    md = report.write_report(results, tmp_path)[0].read_text()
    assert "+ -" not in md
    assert "no line fits (not rising: R² " in md
    assert "break-even at" not in md
    assert "no straight line fits both modes well enough to place a crossing" in md
    # A good fit is stated with its quality.
    assert re.search(r"3\.00 \+ 6\.00 × RTT \(R² 1\.000, largest residual [0-9.e-]+ ms\)", md)


def test_tables_contain_every_cell(written: tuple[str, str, Path]) -> None:
    md, html, _ = written
    for op in OPERATIONS:
        assert f"### `{op}`" in md
        scales = SCALES if op in SCALED else SCALES[:1]
        for mode in ("direct", "proxy", "logical"):
            for rtt in RTTS_MS:
                for scale in scales:
                    latencies = [LATENCY_MS[mode](rtt, scale) * f / 1000 for f in SPREAD]
                    cells = [mode, report.fmt_rtt(rtt), str(scale), str(len(SPREAD)),
                             report.fmt_ms(percentile(latencies, 50)),
                             report.fmt_ms(percentile(latencies, 95)),
                             report.fmt_ms(percentile(latencies, 99))]
                    assert "| " + " | ".join(cells) + " |" in md
                    assert "".join(f"<td>{c}</td>" for c in cells) in html


def test_floors_and_throughput_tables(written: tuple[str, str, Path]) -> None:
    md, _, _ = written
    for rtt in RTTS_MS:
        assert (f"| {report.fmt_rtt(rtt)} | {report.fmt(0.1)} | 1 | "
                f"{report.fmt(0.5 + rtt)} | 1 |") in md
        for mode in ("direct", "proxy", "logical"):
            for clients in CLIENTS:
                calls = report.fmt(1000 * clients / LATENCY_MS[mode](rtt, 10))
                assert (f"| {mode} | {report.fmt_rtt(rtt)} | {clients} | {100 * clients} | "
                        f"{calls} |") in md


def test_answers_method_and_threats(written: tuple[str, str, Path]) -> None:
    md, _, _ = written
    for letter in "abcde":
        assert f"### ({letter})" in md
    assert f"{len(OPERATIONS)} operations were measured in all three modes" in md
    assert f"The largest scale measured is {max(SCALES)} tasks per DAG" in md
    assert "## Threats to validity" in md
    assert "2 CPU cores" in md
    assert f"{len(SPREAD)} samples per cell after 2 warm-up calls" in md
    proxy_trips = [STATEMENTS[op] + 1 for op in OPERATIONS if op in report.WRITE_OPERATIONS]
    assert f"took {min(proxy_trips)} to {max(proxy_trips)} HTTP round trips" in md


def test_command_line_shown_without_password(written: tuple[str, str, Path]) -> None:
    md, html, _ = written
    assert "session-proxy-bench run --db postgresql+psycopg://bench:***@db.example/test" in md
    assert "s3cret" not in md and "s3cret" not in html


# --- self-contained output and charts ----------------------------------------------------


def test_html_is_self_contained(written: tuple[str, str, Path]) -> None:
    _, html, _ = written
    assert html.count("<svg") >= 5
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert "@import" not in html and "url(" not in html


def test_markdown_links_written_charts(written: tuple[str, str, Path]) -> None:
    md, _, out = written
    links = re.findall(r"!\[[^\]]*\]\((chart-[^)]+\.svg)\)", md)
    assert links
    assert sorted(links) == sorted(p.name for p in out.glob("chart-*.svg"))
    for name in links:
        root = ET.fromstring((out / name).read_text())
        assert root.tag.endswith("svg")
        texts = {t.text for t in root.iter() if t.tag.endswith("text")}
        if "bytes" in name:
            assert {"proxy", "logical"} <= texts
        elif name == "chart-headline.svg":
            assert {"reads", "writes", "scheduling", "equal"} <= texts
        elif name.startswith("chart-decomposition"):
            assert {"network: round trips × RTT",
                    "rest: the client (direct: client and database)"} <= texts
        else:
            assert {"direct", "proxy", "logical"} <= texts


def test_expected_charts_present(written: tuple[str, str, Path]) -> None:
    _, _, out = written
    names = {p.name for p in out.glob("chart-*.svg")}
    for op in ("mini-scheduler", "get-dag-run", "heartbeat", "create-dag-run"):
        assert f"chart-latency-rtt-{op}.svg" in names
    assert {"chart-latency-scale-mini-scheduler.svg", "chart-latency-scale-create-dag-run.svg",
            "chart-txn-rtt-mini-scheduler.svg"} <= names
    for rtt in RTTS_MS:
        assert f"chart-throughput-clients-rtt-{report.fmt_rtt(rtt)}.svg" in names
        assert f"chart-p99-clients-rtt-{report.fmt_rtt(rtt)}.svg" in names


def test_stale_charts_are_removed(tmp_path: Path) -> None:
    (tmp_path / "chart-old.svg").write_text("<svg/>")
    report.write_report(make_results(), tmp_path)
    assert not (tmp_path / "chart-old.svg").exists()


# --- missing data ------------------------------------------------------------------------


def test_missing_modes_say_not_measured(tmp_path: Path) -> None:
    results = make_results(modes=("proxy",))
    results["floors"], results["throughput"] = [], []
    md, html = (p.read_text() for p in report.write_report(results, tmp_path))
    for mode in ("direct", "logical"):
        assert f"| {mode} | {report.fmt_rtt(RTTS_MS[0])} | {SCALES[0]} | not measured |" in md
    assert "Floors: not measured." in md
    assert "Throughput: not measured." in md
    assert "proxy against logical API not measured" in md
    assert "not measured: needs at least two RTTs measured in both proxy and logical mode" in md
    assert "<svg" in html
    for path in tmp_path.glob("chart-*.svg"):
        ET.fromstring(path.read_text())


def test_missing_operations_and_single_rtt(tmp_path: Path) -> None:
    results = make_results(operations=["get_dag_run", "mini_scheduler"])
    results["config"]["operations"] = ["get_dag_run", "mini_scheduler", "find_zombies"]
    results["samples"] = [s for s in results["samples"] if s["rtt_ms"] == 0.0]
    results["config"]["rtts"] = [0.0]
    md = report.write_report(results, tmp_path)[0].read_text()
    assert "`find_zombies`: not measured in any mode." in md
    assert "Latency against RTT of `heartbeat`, `create_dag_run`: not measured." in md
    assert "not measured: needs at least two RTTs" in md


@pytest.mark.parametrize("results", [{}, {"samples": [], "floors": [], "throughput": []}])
def test_empty_results_still_produce_a_report(tmp_path: Path, results: dict) -> None:
    md, html = (p.read_text() for p in report.write_report(results, tmp_path))
    assert "not measured" in md and "not measured" in html
    assert "## Threats to validity" in md


# --- formatting --------------------------------------------------------------------------


def test_compared_and_formatters() -> None:
    assert report.compared(2.0) == "2.00× slower"
    assert report.compared(0.5) == "2.00× faster"
    assert report.compared(1.0).startswith("as fast")
    assert report.compared(None) == report.NOT_MEASURED
    assert report.fmt(1234.4) == "1234"
    assert report.fmt(12.34) == "12.3"
    assert report.fmt(0.04) == "0.04"
    assert report.fmt_ratio(123.4) == "123×"
    assert report.fmt_count(3.0) == "3"
    assert report.hide_passwords("x://u:p@h/db y") == "x://u:***@h/db y"


# --- stats helpers -----------------------------------------------------------------------


def test_nearest() -> None:
    assert nearest([10, 100, 500], 100) == 100
    assert nearest([10, 50], 100) == 50
    assert nearest([50, 150], 100) == 50  # tie: the smaller one
    with pytest.raises(ValueError):
        nearest([], 1)


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


# --- charts ------------------------------------------------------------------------------


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_line_chart_is_valid_svg_with_series_and_axes() -> None:
    svg = charts.line_chart(
        {"proxy": [(0, 1.0), (1, 7.0), (5, 31.0)], "logical <&>": [(0, 3.0), (5, 8.0)]},
        title="latency & RTT", x_label="RTT (ms)", y_label="p50 (ms)")
    root = _parse(svg)
    texts = _texts(root)
    for expected in ("proxy", "logical <&>", "latency & RTT", "RTT (ms)", "p50 (ms)"):
        assert expected in texts
    assert "0" in texts and "5" in texts  # x ticks
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 5
    assert "script" not in svg


def test_line_chart_handles_missing_and_degenerate_data() -> None:
    root = _parse(charts.line_chart({"a": [(1, None)], "b": [(2, 4.0)]}, title="t",
                                    x_label="x", y_label="y"))
    assert "a (not measured)" in _texts(root)
    root = _parse(charts.line_chart({"a": []}, title="t", x_label="x", y_label="y"))
    assert "not measured" in _texts(root)
    _parse(charts.line_chart({"a": [(0, 0.0), (1, 0.0)]}, title="t", x_label="x",
                             y_label="y"))
    _parse(charts.line_chart({"a": [(1, 10.0), (2, 1000.0)]}, title="t", x_label="x",
                             y_label="y", log_y=True))


def test_bar_chart_is_valid_svg() -> None:
    svg = charts.bar_chart(["get_dag_run", "mini_scheduler (100 tasks/DAG)"],
                           {"proxy": [1000.0, 12000.0], "logical": [300.0, None]},
                           title="bytes", y_label="bytes", log_y=True)
    root = _parse(svg)
    texts = _texts(root)
    assert {"proxy", "logical", "get_dag_run", "mini_scheduler (100 tasks/DAG)"} <= set(texts)
    bars = [r for r in root.findall("{http://www.w3.org/2000/svg}rect")
            if r.find("{http://www.w3.org/2000/svg}title") is not None]
    assert len(bars) == 3  # the None value leaves a gap
    assert all(float(r.get("height", "0")) >= 0 for r in bars)


def test_bar_chart_rejects_misaligned_series() -> None:
    with pytest.raises(ValueError):
        charts.bar_chart(["a", "b"], {"s": [1.0]}, title="t", y_label="y")


def test_bar_chart_heights_follow_values() -> None:
    root = _parse(charts.bar_chart(["a", "b"], {"s": [1.0, 2.0]}, title="t", y_label="y"))
    bars = [r for r in root.findall("{http://www.w3.org/2000/svg}rect")
            if r.find("{http://www.w3.org/2000/svg}title") is not None]
    heights = [float(r.get("height")) for r in bars]
    assert heights[1] == pytest.approx(2 * heights[0], rel=0.02)


def test_nice_ticks_and_labels() -> None:
    ticks = charts.nice_ticks(0, 31)
    assert ticks[0] == 0 and ticks[-1] <= 31
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    assert charts.nice_ticks(2, 2) == [2]
    assert charts.log_ticks(10, 1000) == [10, 100, 1000]
    assert charts.format_tick(2500) == "2.5k"
    assert charts.format_tick(0.5) == "0.5"


def _security(outcomes: dict[tuple[str, str], tuple[int, str | None]]) -> dict:
    names = sorted({name for name, _ in outcomes})
    configs = ["proxy", "proxy+policy", "logical"]
    return {
        "backend": "sqlite",
        "configs": configs,
        "limits": {"--lease-seconds": "2"},
        "attacks": [
            {"name": name, "category": "statements", "goal": "g",
             "claimed_stopped": {config: config != "proxy" for config in configs}}
            for name in names
        ],
        "outcomes": [
            {"attack": name, "category": "statements", "config": config, "status": status,
             "code": None, "message": "", "harm": harm, "changed_database": False,
             "stopped": harm is None}
            for (name, config), (status, harm) in outcomes.items()
        ],
    }


def test_security_section_counts_and_contradictions() -> None:
    from session_proxy_bench.report import render_markdown
    from session_proxy_bench.report.sections.security import security_section

    outcomes = {
        ("drop", "proxy"): (200, "dropped log"),
        ("drop", "proxy+policy"): (403, None),
        ("drop", "logical"): (403, None),
        ("peek", "proxy"): (200, "read passwords secret-1"),
        ("peek", "proxy+policy"): (200, "read passwords secret-1"),  # claimed stopped
        ("peek", "logical"): (403, None),
    }
    text = render_markdown(security_section({"security": _security(outcomes)}))
    assert "| drop | statements | **through** (200): dropped log | stopped (403) |" in text
    assert "| **all** | **0 of 2** | **1 of 2** | **2 of 2** |" in text
    assert "lets 2 of 2 attacks through: drop, peek" in text
    assert "Through in every configuration: none" in text
    assert "contradicts: peek (proxy+policy)" in text


def test_security_section_without_a_suite_run() -> None:
    from session_proxy_bench.report import render_markdown
    from session_proxy_bench.report.sections.security import security_section

    assert "was not run" in render_markdown(security_section({"security": None}))
