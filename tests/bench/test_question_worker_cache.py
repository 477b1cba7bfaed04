"""The worker_cache question on SQLite, quick: hits send nothing, changes arrive within the TTL.

The server serves HTTPS with a certificate made for the test: the readers,
the staleness readers' processes among them, verify with the context's
``verify``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from session_proxy_bench.questions.worker_cache import measure, read_plan
from session_proxy_server.testing import ServerProcess
from tests.conftest import WORKLOAD_OPERATIONS

from .question_fixtures import quick_context, rendered, rows, seeded_sqlite


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict,
                                                                         dict]]:
    url = seeded_sqlite(tmp_path_factory.mktemp("worker_cache") / "bench.db")
    before = rows(url)
    with ServerProcess(url, "--operations", WORKLOAD_OPERATIONS,
                       tls_dir=tmp_path_factory.mktemp("tls")) as server:
        raw = measure(quick_context(url, server.url, server.token, verify=server.verify))
    yield raw, before, rows(url)


def test_leaves_the_database_as_found(measured: tuple[dict[str, Any], dict, dict]) -> None:
    assert measured[2] == measured[1]


def test_hits_make_no_requests(measured: tuple[dict[str, Any], dict, dict]) -> None:
    raw = measured[0]
    plan = read_plan(raw["tasks"])
    reads = sum(len(task) for task in plan)
    distinct = len({read for task in plan for read in task})
    for mode, runs in raw["modes"].items():
        plain, cached = runs["uncached"], runs["cached"]
        assert plain["reads"] == cached["reads"] == reads
        assert cached["hits"] + cached["misses"] == reads
        assert cached["misses"] >= distinct  # each key is fetched at least once
        assert cached["hits"] > 0
        if mode != "direct":
            # One request per read without the cache; none for a hit.
            assert plain["round_trips"] == reads
            assert cached["round_trips"] == cached["misses"]
    # The same reads, the same TTL, the same clock: the same hits in every design.
    assert len({runs["cached"]["hits"] for runs in raw["modes"].values()}) == 1


def test_hit_rate_grows_with_the_ttl(measured: tuple[dict[str, Any], dict, dict]) -> None:
    rates = [row["hit_rate"] for row in measured[0]["hit_rate_by_ttl"].values()]
    assert rates == sorted(rates) and rates[0] < rates[-1]


def test_readers_see_every_change_within_the_ttl(
        measured: tuple[dict[str, Any], dict, dict]) -> None:
    staleness = measured[0]["staleness"]
    assert set(staleness["readers"]) == {"logical", "proxy"}
    for reader in staleness["readers"].values():
        assert reader["never_caught_up"] == 0
        assert len(reader["delays_s"]) == staleness["changes"]
        assert 0 <= reader["superseded"] < staleness["changes"]
        assert reader["max_age_served_s"] <= staleness["ttl_s"]
        assert reader["hits"] > 0
        # The TTL plus one read's time (a loaded machine: generous, still bounded).
        assert max(reader["delays_s"]) < staleness["ttl_s"] + 1.0


def test_section_renders_from_the_raw_numbers(
        measured: tuple[dict[str, Any], dict, dict]) -> None:
    text = rendered("worker_cache", measured[0])
    assert "### Fine-grained calls are fast and can be cached in workers" in text
    assert "Asked by Jarek" in text
    for mode in ("direct", "proxy", "logical"):
        assert f"| {mode} |" in text
    assert "| logical | 300 |" in text  # the staleness row: reader and TTL in ms
