"""The thread's questions measured on SQLite with a quick context, and their sections.

Each measurement runs against a real server process and a seeded database
file, returns the keys its section reads, with counts that break when the
feature breaks (the lazy load is one more proxy round trip; the AIP-44
pattern opens one connection per call, the shipped client none after its
first; every mode leaves the dag run correct), and leaves the database as
it found it.  Each section renders from that raw dict.

The server serves HTTPS with a certificate made for the test, as a benchmark
run's does: every client a measurement builds (in child processes too) must
verify with the context's ``verify`` or its calls fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from session_proxy_bench.questions import QUESTIONS, QuestionContext, integrity
from session_proxy_bench.questions.integrity import lock_waits
from session_proxy_bench.report.markdown import render_markdown
from session_proxy_bench.report.sections.questions import QUESTION_SECTIONS, questions_section
from session_proxy_bench.workload.models import Base
from session_proxy_bench.workload.modes import MODES
from session_proxy_bench.workload.script import dump_tables
from session_proxy_bench.workload.seed import reset_schema, seed
from tests.conftest import WORKLOAD_OPERATIONS, ServerProcess, backend_url

MINE = ("calls_and_saves", "serialization", "integrity", "logical_vs_aip44")


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServerProcess]]:
    path: Path = tmp_path_factory.mktemp("questions") / "questions.db"
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    reset_schema(engine)
    with sessionmaker(bind=engine)() as session:
        seed(session, dags=2, runs_per_dag=2, tasks_per_dag=10)
        session.commit()
    engine.dispose()
    with ServerProcess(url, "--operations", WORKLOAD_OPERATIONS,
                       tls_dir=tmp_path_factory.mktemp("tls")) as server:
        yield url, server


@pytest.fixture(scope="module")
def measured(database: tuple[str, ServerProcess]) -> dict[str, dict]:
    url, server = database
    engine = sa.create_engine(url)
    before = dump_tables(engine)
    assert server.url.startswith("https:")
    ctx = QuestionContext(db_url=url, server_url=server.url, token=server.token,
                          rtts=(0.0, 0.002), samples=5, quick=True, verify=server.verify)
    results = {q.key: q.measure(ctx) for q in QUESTIONS if q.key in MINE}
    # The measurements leave the run's rows as they found them.
    assert dump_tables(engine) == before
    engine.dispose()
    return results


def test_registered_in_order() -> None:
    keys = [q.key for q in QUESTIONS]
    assert [k for k in keys if k in MINE] == list(MINE)
    assert set(MINE) <= set(QUESTION_SECTIONS)


def test_calls_and_saves(measured: dict[str, dict]) -> None:
    raw = measured["calls_and_saves"]
    proxy, logical = raw["designs"]["proxy"], raw["designs"]["logical"]
    # The lazy load after the fact costs the proxy exactly one more round trip.
    assert proxy["lazy_load"]["round_trips"] == {"mean": 1, "min": 1, "max": 1}
    assert proxy["get"]["round_trips"]["max"] == 1
    assert proxy["save"]["round_trips"]["max"] == 1
    # The logical client cannot lazy-load: it calls another operation.
    assert raw["logical_lazy_load_error"] == "DetachedInstanceError"
    assert raw["logical_returns"].endswith(".DagRun")
    for step in ("get", "lazy_load", "save"):
        assert logical[step]["round_trips"]["max"] == 1
        assert proxy[step]["request_bytes"]["min"] > 0
        assert logical[step]["response_bytes"]["min"] > 0
    assert raw["task_instances_loaded"] == {"proxy": raw["tasks"], "logical": raw["tasks"]}
    assert raw["saved"] == {"proxy": True, "logical": True}


def test_serialization(measured: dict[str, dict]) -> None:
    raw = measured["serialization"]
    assert raw["scales"] == [10, 100, 500]
    by_key = {(p["operation"], p["tasks"], p["design"]): p for p in raw["payloads"]}
    assert len(by_key) == 3 * 3 * 2
    for entry in raw["payloads"]:
        assert set(entry["phases_s"]) == {"client_encode", "server_decode", "server_encode",
                                          "client_decode"}
        assert all(len(v) == raw["repeats"] and min(v) > 0 for v in entry["phases_s"].values())
    # Loading n task instances: the answer grows with n in both designs.
    for design in ("proxy", "logical"):
        small = by_key[("get_task_instances", 10, design)]["response_bytes"]
        large = by_key[("get_task_instances", 500, design)]["response_bytes"]
        assert large > 20 * small
    # Writing n task instances: the proxy sends every row, the logical call its arguments.
    proxy_sent = by_key[("create_dag_run", 500, "proxy")]["request_bytes"]
    logical_sent = by_key[("create_dag_run", 500, "logical")]["request_bytes"]
    assert proxy_sent > 500 * 50 and logical_sent < 1000
    assert by_key[("create_dag_run", 500, "logical")]["round_trips"] == 1
    modes = {(e["operation"], e["tasks"], e["mode"]) for e in raw["latency"]}
    assert len(modes) == 3 * 3 * len(MODES)
    assert all(len(e["latency_s"]) == raw["latency_samples"] for e in raw["latency"])


def test_integrity(measured: dict[str, dict]) -> None:
    raw = measured["integrity"]
    assert raw["backend"] == "sqlite"
    assert set(raw["modes"]) == set(MODES)
    transactions = 2 * raw["workers"] * raw["tasks_per_worker"]
    for result in raw["modes"].values():
        state = result["final_state"]
        # Each finish locks its own task instance: none is lost or repeated.
        assert state["every_task_finished_once"]
        assert state["last_task_state"] == "scheduled"
        # SQLite takes no row lock for mini_scheduler's reads (no FOR UPDATE), so two
        # workers finishing the last tasks together may both schedule the fan-in task:
        # the check must say so.
        assert state["last_task_scheduled_by"] >= 1
        assert state["correct"] is (state["last_task_scheduled_by"] == 1)
        assert len(result["together"]) == transactions
        assert len(result["alone"]) == 2 * raw["tasks_per_worker"]
        assert all(t["attempts"] >= 1 for t in result["together"])
        assert len(lock_waits(result, "mini_scheduler")) == transactions // 2
        assert result["db_lock_wait_s"] is None  # SQLite: nothing to sample


def test_integrity_postgresql(tmp_path: Path) -> None:
    """On PostgreSQL the dag run's row lock keeps the final state correct in every mode."""
    url = backend_url("postgresql", tmp_path / "unused.db")
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)  # the tables, if missing; their rows are left alone
    engine.dispose()
    with ServerProcess(url, "--operations", WORKLOAD_OPERATIONS,
                       tls_dir=tmp_path / "tls") as server:
        ctx = QuestionContext(db_url=url, server_url=server.url, token=server.token,
                              rtts=(0.0,), samples=5, quick=True, verify=server.verify)
        raw = integrity.measure(ctx)
    assert raw["backend"] == "postgresql"
    for mode, result in raw["modes"].items():
        assert result["final_state"]["correct"], (mode, result["final_state"])
        assert result["db_lock_samples"] > 0  # the database's lock waits were sampled
        assert result["db_lock_wait_s"] is not None


def test_logical_vs_aip44(measured: dict[str, dict]) -> None:
    raw = measured["logical_vs_aip44"]
    assert [cell["rtt_ms"] for cell in raw["rtts"]] == [0.0, 2.0]
    assert raw["tls"] is True  # its own server serves HTTPS, as the run's does
    for cell in raw["rtts"]:
        # One connection per call for the AIP-44 pattern, one for all for the shipped client.
        assert cell["connections"] == {"shipped": 0, "aip44": cell["calls"]}
        assert cell["connections_total"] == {"shipped": 1, "aip44": cell["calls_total"]}
        assert all(len(v) == cell["calls"] for v in cell["latency_s"].values())
    # At 2 ms RTT the new connection's handshake costs the AIP-44 pattern a round trip more.
    slow = raw["rtts"][1]["latency_s"]
    assert sorted(slow["aip44"])[len(slow["aip44"]) // 2] > 0.004


def test_sections_render(measured: dict[str, dict]) -> None:
    text = render_markdown(questions_section({"questions": measured}))
    for needle in ("(asked by Ash Berlin-Taylor)", "(asked by Andrew Godwin)",
                   "(asked by Jarek Potiuk)", "AIP-44", "`get_task_instances`",
                   "`enqueue_dag_run`", "DetachedInstanceError", "µs per row", "final state",
                   "AIP-44 ÷ shipped"):
        assert needle in text, needle
    assert "| direct | 18 |" in text
    assert "×" in text and "–" in text  # ratios with intervals
    assert "not measured" not in text
    # The same raw numbers render the same text (seeded intervals).
    assert render_markdown(questions_section({"questions": measured})) == text

