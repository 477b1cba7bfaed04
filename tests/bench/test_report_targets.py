"""The Targets section's rows for issue 16, computed from small synthetic results.

Each results dict holds only what the rows read: floors (``db_select_1``,
``http_echo``, ``proxy_select_txn``) and the ``"targets"`` entry the runner
writes (:mod:`session_proxy_bench.targets_probe`).  One set of numbers meets
every goal, one misses every goal, and an old results file (no ``"targets"``,
no ``proxy_select_txn`` floor) renders every new row as "not measured".
"""

from __future__ import annotations

from typing import Any

import pytest

from session_proxy_bench.report import render_markdown
from session_proxy_bench.report.measurements import Measurements
from session_proxy_bench.report.sections.targets import targets_section

ROWS = {
    "server CPU": "server CPU per one-statement pipeline request",
    "client CPU": "client CPU per one-row SELECT in a transaction",
    "txn select": "one-row SELECT in an open transaction, proxy ÷ direct",
    "echo": "HTTP echo p50 above the injected RTT, 1 ms RTT",
    "round trips": "database round trips per transaction",
    "throughput": "throughput of one-row read transactions, 4 client processes",
}


def _floors(floor: str, rtt_ms: float, latency_s: float) -> list[dict[str, Any]]:
    """Five samples whose median is ``latency_s``."""
    return [{"floor": floor, "rtt_ms": rtt_ms, "latency_s": latency_s * f}
            for f in (0.9, 0.95, 1.0, 1.05, 1.1)]


def _results(*, server_cpu_s: float, client_proxy_s: float, txn_select_s: float,
             echo_1ms_s: float, proxy_turns: list[int], proxy_tps: float) -> dict[str, Any]:
    floors = (_floors("db_select_1", 0.0, 0.0004) + _floors("proxy_select_txn", 0.0, txn_select_s)
              + _floors("http_echo", 0.0, 0.0005) + _floors("proxy_select_1", 0.0, 0.0005)
              + _floors("http_echo", 1.0, echo_1ms_s) + _floors("proxy_select_1", 1.0, echo_1ms_s))
    return {
        "format": 1,
        "config": {"rtts": [0.0, 0.001]},
        "environment": {"backend": "postgresql"},
        "floors": floors,
        "targets": {
            "server_cpu": {"pid": 1, "requests": 1002, "cpu_s": server_cpu_s * 1002,
                           "per_request_s": server_cpu_s},
            "client_cpu": {"statements": 200, "rounds": 3,
                           "direct_s": [0.0001, 0.0001, 0.0001],
                           "proxy_s": [client_proxy_s] * 3},
            "db_round_trips": {"applicable": True, "direct": [3, 3, 3], "proxy": proxy_turns},
            "process_throughput": {
                "processes": 4, "rtt_ms": 0.0,
                "direct": {"throughput": 4000.0, "errors": 0},
                "proxy": {"throughput": proxy_tps, "errors": 0},
            },
        },
    }


def _rows(results: dict[str, Any]) -> dict[str, list[str]]:
    """The Targets table's rows by short name: [target, goal, measured, verdict]."""
    markdown = render_markdown(targets_section(Measurements(results)))
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    found = {}
    for name, prefix in ROWS.items():
        matching = [line for line in lines if line.startswith(f"| {prefix}")]
        assert len(matching) == 1, (name, lines)
        found[name] = [cell.strip() for cell in matching[0].strip("|").split("|")]
    return found


MEETING = dict(server_cpu_s=0.000250, client_proxy_s=0.000350, txn_select_s=0.0007,
               echo_1ms_s=0.00125, proxy_turns=[3, 3, 3], proxy_tps=1200.0)
MISSING = dict(server_cpu_s=0.0016, client_proxy_s=0.0014, txn_select_s=0.0028,
               echo_1ms_s=0.00395, proxy_turns=[7, 7, 7], proxy_tps=160.0)


def test_values_that_meet_every_goal_are_met() -> None:
    rows = _rows(_results(**MEETING))
    assert {name: row[3] for name, row in rows.items()} == dict.fromkeys(ROWS, "met")
    assert rows["server CPU"][2].startswith("250 µs (1,002 requests)")
    assert rows["client CPU"][2].startswith("250 µs (350 µs vs 100 µs")
    assert rows["txn select"][2].startswith("1.75×")
    assert rows["echo"][2].startswith("0.25 ms")
    assert rows["round trips"][2].startswith("3 vs 3")
    assert rows["throughput"][2].startswith("0.30×")


def test_values_that_miss_every_goal_are_missed() -> None:
    rows = _rows(_results(**MISSING))
    assert {name: row[3] for name, row in rows.items()} == dict.fromkeys(ROWS, "**missed**")
    assert rows["server CPU"][2].startswith("1600 µs")
    assert rows["client CPU"][2].startswith("1300 µs")
    assert rows["txn select"][2].startswith("7.00×")
    assert rows["echo"][2].startswith("2.95 ms")
    assert rows["round trips"][2].startswith("7 vs 3")
    assert rows["throughput"][2].startswith("0.04×")


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_goal_flips_alone(name: str) -> None:
    """Missing one number flips only its own row: each row reads its own input."""
    keys = {"server CPU": "server_cpu_s", "client CPU": "client_proxy_s",
            "txn select": "txn_select_s", "echo": "echo_1ms_s",
            "round trips": "proxy_turns", "throughput": "proxy_tps"}
    mixed = dict(MEETING, **{keys[name]: MISSING[keys[name]]})
    verdicts = {n: row[3] for n, row in _rows(_results(**mixed)).items()}
    assert verdicts == {n: "**missed**" if n == name else "met" for n in ROWS}


def test_an_old_results_file_renders_not_measured() -> None:
    results = _results(**MEETING)
    del results["targets"]
    results["floors"] = [f for f in results["floors"] if f["floor"] != "proxy_select_txn"
                         and f["rtt_ms"] == 0.0]
    rows = _rows(results)
    assert {name: row[2:] for name, row in rows.items()} == dict.fromkeys(
        ROWS, ["not measured", "not measured"])


def test_sqlite_round_trips_are_not_applicable() -> None:
    results = _results(**MEETING)
    results["targets"]["db_round_trips"] = {"applicable": False,
                                            "reason": "SQLite runs in-process: no round trips"}
    row = _rows(results)["round trips"]
    assert row[2].startswith("not applicable (SQLite")
    assert row[3] == "not applicable"
