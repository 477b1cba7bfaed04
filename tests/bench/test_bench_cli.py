"""The benchmark CLI: argument parsing, presets, and a tiny run end to end."""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from session_proxy_bench.cli import (
    PRESETS,
    build_parser,
    config_from,
    parse_duration,
    summary_table,
)
from session_proxy_bench.runner import BenchConfig
from session_proxy_bench.stats import (
    break_even,
    group,
    linear_fit,
    mean,
    percentile,
    ratio,
    summarize,
)
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("1ms", 0.001), ("5 ms", 0.005), ("500us", 0.0005), ("0.01s", 0.01), ("2", 0.002)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "-1ms", "1 hour", ""])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="bad round-trip time"):
        parse_duration(text)


def test_presets_and_overrides() -> None:
    parser = build_parser()
    quick = config_from(parser.parse_args(["run", "--quick"]))
    assert quick.db == "sqlite" and quick.rtts == PRESETS["quick"]["rtts"]
    full = config_from(parser.parse_args(["run", "--full", "--rtt", "0,2ms", "--clients", "3"]))
    assert full.db.startswith("postgresql") and full.rtts == [0.0, 0.002] and full.clients == [3]
    assert full.scales == PRESETS["full"]["scales"]


def test_bad_configuration_names_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown operations \\['nope'\\]"):
        BenchConfig(operations=["nope"])
    with pytest.raises(ValueError, match="unknown modes"):
        BenchConfig(modes=["telepathy"])
    with pytest.raises(ValueError, match="tasks-per-dag"):
        BenchConfig(scales=[1])


def test_cli_rejects_unknown_operation_without_running(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "session_proxy_bench.cli", "run", "--operations", "nope",
         "--out", str(tmp_path / "r.json")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "unknown operations ['nope']" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_percentile_and_mean_against_definitions() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100
    assert percentile(values, 50) == pytest.approx((50 + 51) / 2)
    assert percentile(values, 99) == pytest.approx(99 + 0.01 * 1)
    assert mean(values) == pytest.approx(sum(values) / len(values))
    with pytest.raises(ValueError):
        percentile([], 50)


def test_linear_fit_and_break_even_recover_the_lines() -> None:
    rtts = [0.0, 1.0, 5.0, 10.0]
    proxy = [(x, 1.0 + 6 * x) for x in rtts]
    logical = [(x, 3.0 + 1 * x) for x in rtts]
    assert linear_fit(proxy) == pytest.approx((1.0, 6.0))
    assert break_even(proxy, logical) == pytest.approx((3.0 - 1.0) / (6 - 1))
    parallel = [(x, 2.0 + 6 * x) for x in rtts]
    assert break_even(proxy, parallel) is None
    assert ratio(6.0, 3.0) == 2.0 and ratio(1.0, 0) is None and ratio(None, 1.0) is None


def test_summarize_and_group() -> None:
    samples = [
        {"operation": "op", "mode": m, "latency_s": lat, "round_trips": rt,
         "request_bytes": 10, "response_bytes": 20, "statements": 2, "server_s": 0.001,
         "txn_s": 0.002}
        for m, lat, rt in [("proxy", 0.004, 3), ("proxy", 0.006, 3), ("logical", 0.002, 1)]
    ]
    groups = group(samples, ["mode"])
    assert list(groups) == [("proxy",), ("logical",)]
    proxy = summarize(groups[("proxy",)])
    assert proxy["n"] == 2 and proxy["p50"] == pytest.approx(0.005)
    assert proxy["round_trips"] == 3 and proxy["request_bytes"] == 10


def test_tiny_benchmark_end_to_end(tmp_path: Path) -> None:
    operations = ["get_dag_run", "mini_scheduler"]
    modes = ["direct", "proxy", "logical"]
    rtts = ["0", "1ms"]
    out = tmp_path / "results.json"
    report = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "session_proxy_bench.cli", "run",
         "--operations", ",".join(operations),
         "--modes", ",".join(modes), "--rtt", ",".join(rtts), "--tasks-per-dag", "4,6",
         "--clients", "1,2", "--samples", "2", "--warmup", "1", "--throughput-seconds", "0.3",
         # The questions have their own tests (tests/bench/test_question_*.py).
         "--no-progress", "--no-security", "--no-questions", "--out", str(out),
         "--report", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    # The attack suite has its own tests (tests/integration/security/test_attacks.py).
    assert results["security"] is None
    assert "The attack suite was not run" in (report / "report.md").read_text()
    assert results["command"][:2] == ["session-proxy-bench", "run"]
    assert results["environment"]["backend"] == "sqlite"
    cells = {(s["operation"], s["mode"], s["rtt_ms"], s["tasks_per_dag"])
             for s in results["samples"]}
    expected = {(op, mode, rtt, 4) for op, mode, rtt in itertools.product(
        operations, modes, [0.0, 1.0])}
    expected |= {("mini_scheduler", mode, rtt, 6) for mode, rtt in itertools.product(
        modes, [0.0, 1.0])}
    assert cells == expected
    counts = group(results["samples"], ["operation", "mode", "rtt_ms", "tasks_per_dag"])
    assert {len(v) for v in counts.values()} == {2}
    logical = [s for s in results["samples"] if s["mode"] == "logical"]
    assert {s["round_trips"] for s in logical} == {1}
    assert {(t["mode"], t["clients"], t["rtt_ms"]) for t in results["throughput"]} == set(
        itertools.product(modes, [1, 2], [0.0, 1.0]))
    assert {f["floor"] for f in results["floors"]} == {
        "db_select_1", "http_echo", "proxy_select_1", "proxy_select_txn"}
    # Issue 16's Targets, measured once at 0 ms RTT against the bench's own server.
    targets = results["targets"]
    assert targets["server_cpu"]["requests"] == 1002 and targets["server_cpu"]["cpu_s"] > 0
    assert len(targets["client_cpu"]["proxy_s"]) == len(targets["client_cpu"]["direct_s"]) == 5
    assert targets["db_round_trips"]["applicable"] is False  # SQLite: in-process
    runs = targets["process_throughput"]
    assert runs["processes"] == 4
    for mode in ("direct", "proxy"):
        assert runs[mode]["transactions"] > 0 and runs[mode]["errors"] == 0
    assert "server CPU per one-statement pipeline request" in (report / "report.md").read_text()
    # The probes: flush round trips are exactly one in proxy mode, at every RTT.
    flushes = [p for p in results["probes"] if p["probe"] == "flush" and p["mode"] == "proxy"]
    assert {(p["n"], p["rtt_ms"]) for p in flushes} == set(
        itertools.product([1, 100, 10_000], [0.0, 1.0]))
    assert {p["round_trips"] for p in flushes} == {1}
    assert {p["n"] for p in results["probes"] if p["probe"] == "select_rows"} == {10_000}
    assert summary_table(results) in result.stdout

    html = (report / "report.html").read_text()
    markdown = (report / "report.md").read_text()
    for text in (html, markdown):
        for op, mode in itertools.product(operations, modes):
            assert op in text and mode in text
    assert "<svg" in html
