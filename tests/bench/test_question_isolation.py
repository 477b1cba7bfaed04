"""The isolation question on SQLite, quick: real processes, a real server, counts that add up."""

from __future__ import annotations

from typing import Any

import pytest

from session_proxy_bench.questions.isolation import OPTIONS, measure

from .question_fixtures import quick_context, rendered, rows, seeded_sqlite


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict, dict]:
    url = seeded_sqlite(tmp_path_factory.mktemp("isolation") / "bench.db")
    before = rows(url)
    # A run serving HTTPS: the measurement's own server does too, and its
    # worker and scheduler processes verify its certificate.
    raw = measure(quick_context(url, "https://127.0.0.1:1"))
    return raw, before, rows(url)


def test_leaves_the_database_as_found(measured: tuple[dict[str, Any], dict, dict]) -> None:
    _, before, after = measured
    assert after == before


def test_every_option_has_its_documented_numbers(
        measured: tuple[dict[str, Any], dict, dict]) -> None:
    raw, _, _ = measured
    assert raw["backend"] == "sqlite" and raw["workers"] == 2
    assert raw["tls"] is True
    assert list(raw["options"]) == list(OPTIONS)
    for key, option in raw["options"].items():
        assert (option["workers_via"], option["scheduler_via"]) == OPTIONS[key]
        for role in ("worker", "scheduler"):
            numbers = option[role]
            assert numbers["errors"] == {}, (key, role, numbers["errors"])
            assert numbers["calls"] > 0 and numbers["throughput"] > 0
            assert len(numbers["latency_s"]) == numbers["calls"]  # fewer than the cap
            assert sum(numbers["calls_by_operation"].values()) == numbers["calls"]
        assert set(option["worker"]["calls_by_operation"]) == set(raw["worker_operations"])
        assert set(option["scheduler"]["calls_by_operation"]) == set(
            raw["scheduler_operations"])
        # No connections to count on SQLite.
        assert option["connections"]["held"] is None


def test_server_counts_follow_the_option(measured: tuple[dict[str, Any], dict, dict]) -> None:
    options = measured[0]["options"]
    none, proxy, logical, full = (options[k] for k in ("none", "proxy", "logical", "full"))
    assert none["server_cpu_s"] is None and none["server_calls"] == 0
    assert none["server_requests"] == 0
    # The logical API: one request per worker call; the scheduler stays direct.
    assert logical["server_requests"] == logical["worker"]["calls"]
    assert logical["server_calls"] == logical["worker"]["calls"]
    assert logical["scheduler"]["round_trips"] == 0
    # The proxy: at least one request per worker call (several for some).
    assert proxy["worker"]["round_trips"] > proxy["worker"]["calls"]
    assert proxy["scheduler"]["round_trips"] == 0
    # Full isolation: the scheduler's calls go through the server too.
    assert full["scheduler"]["round_trips"] >= full["scheduler"]["calls"]
    assert full["server_calls"] == full["worker"]["calls"] + full["scheduler"]["calls"]
    for option in (proxy, logical, full):
        assert option["server_cpu_s"] > 0
        assert option["server_cpu_per_call_s"] == pytest.approx(
            option["server_cpu_s"] / option["server_calls"])


def test_section_renders_from_the_raw_numbers(
        measured: tuple[dict[str, Any], dict, dict]) -> None:
    text = rendered("isolation", measured[0])
    assert "### Why route the scheduler at all" in text
    assert "Asked by Andrew and Ash" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(OPTIONS)  # header and one row per option
    assert "full isolation (all through the proxy)" in text
    assert "Connections: n/a on sqlite" in text
    assert "95% interval" in text
