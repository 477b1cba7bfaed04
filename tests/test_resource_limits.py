"""Resources stay bounded whatever a client sends (issue 14, item 4).

Real server processes over real HTTP in front of SQLite, PostgreSQL and
MariaDB: statement timeouts a client switched off, statements running when
the transaction limit passes, lazily produced SQLite rows, every URL
spelling of MySQL, interrupted statements that answer a value, the outcome
memory's byte cap, server-side cursors for long results, and slow clients.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from server.outcomes import Outcome, OutcomeStore
from session_proxy import protocol
from session_proxy.codec import dumps

from .conftest import ServerProcess


def pipeline(server: ServerProcess, steps: list[dict], txn: str | None = None) -> tuple[int, Any]:
    """One pipeline request as the admin; (status, decoded body)."""
    response = requests.post(
        server.url + protocol.PIPELINE_PATH,
        data=dumps(protocol.pipeline_request(txn, steps)),
        headers={
            "Authorization": f"Bearer {server.token}",
            "Content-Type": protocol.JSON_CONTENT_TYPE,
        },
        timeout=120,
    )
    return response.status_code, response.json()


def run(server: ServerProcess, *sqls: str) -> tuple[int, Any, float]:
    """Run ``sqls`` in one new transaction, rolled back; (status, body, seconds)."""
    steps: list[dict] = [{"op": protocol.BEGIN}]
    steps += [{"op": protocol.EXECUTE, "sql": sql, "params": None} for sql in sqls]
    steps.append({"op": protocol.ROLLBACK})
    started = time.monotonic()
    status, body = pipeline(server, steps)
    took = time.monotonic() - started
    txn = body.get("error", {}).get("txn") if status != 200 else None
    if txn:
        pipeline(server, [{"op": protocol.ROLLBACK}], txn)
    return status, body, took


@pytest.fixture
def start_server(db_url: str) -> Iterator:
    started: list[ServerProcess] = []

    def start(*flags: str, url: str | None = None) -> ServerProcess:
        proc = ServerProcess(url or db_url, *flags)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


#: A statement that switches the database's statement timeout off.
TIMEOUT_OFF = {
    "postgresql": "SET LOCAL statement_timeout = 0",
    "mysql": "SET SESSION max_statement_time = 0",
    "sqlite": "SELECT 1",  # nothing a client can switch off
}

#: A statement that runs for about ``n`` seconds (SQLite: far longer).
def sleep(backend: str, seconds: int) -> str:
    if backend == "postgresql":
        return f"SELECT pg_sleep({seconds})"
    if backend == "mysql":
        return f"SELECT SLEEP({seconds})"
    return ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 3000000000) SELECT count(*) FROM c")


# -- the outcome memory ------------------------------------------------------------------


def test_outcome_memory_is_capped_by_bytes(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    store = OutcomeStore(engine, window_seconds=3600, memory_bytes=1_000_000)
    try:
        answer = b"x" * 100_000
        for n in range(300):  # 30 MB of answers
            store.remember("worker-1", f"key-{n:04d}-padding-pad", Outcome(200, answer))
        kept = [n for n in range(300) if store.recall("worker-1", f"key-{n:04d}-padding-pad")]
        assert kept == list(range(290, 300))  # the newest ten, 1 MB
        assert store.held_bytes == 1_000_000

        # A second answer under a key replaces the first, bytes and all.
        store.remember("worker-1", "key-0299-padding-pad", Outcome(200, b"{}"))
        assert store.held_bytes == 900_002
        # An answer larger than the whole cap is not kept in memory at all.
        store.remember("worker-1", "huge-key-padding-pad", Outcome(200, b"y" * 1_000_001))
        assert store.recall("worker-1", "huge-key-padding-pad") is None
        assert store.held_bytes == 900_002
        # Expiry gives the bytes back.
        store.window_seconds = -1
        store._memory.clear()
        store.held_bytes = 0
        for n in range(3):
            store.remember("worker-1", f"old-key-padding-pad{n}", Outcome(200, b"z" * 10))
        assert store.held_bytes == 30
        store.purge()
        assert store.held_bytes == 0 and not store._memory
    finally:
        store.stop()
        engine.dispose()


def test_outcome_memory_bytes_option(start_server, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("a CLI option; one backend is enough")
    from server.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["--db-url", "sqlite:///x.db"]).outcome_memory_bytes == 64 * 1024 * 1024
    server = start_server("--outcome-memory-bytes", "12345")
    status, body, _ = run(server, "SELECT 1")
    assert status == 200, body


# -- statement timeouts ----------------------------------------------------------------------


def test_a_statement_past_the_timeout_fails_even_when_the_client_switched_it_off(
    start_server, backend: str
) -> None:
    server = start_server("--statement-timeout", "1")
    status, body, took = run(server, TIMEOUT_OFF[backend], sleep(backend, 6))
    assert status == 422, body
    assert body["error"]["dbapi_class"] == "OperationalError"
    assert took < 5, took  # the statement would have run 6 s (SQLite: minutes)
    # The server is fine afterwards, and the next lease has its timeout again.
    status, body, took = run(server, sleep(backend, 6))
    assert status == 422 and took < 5, (body, took)


def test_max_transaction_seconds_cancels_a_running_statement(
    start_server, backend: str
) -> None:
    server = start_server("--statement-timeout", "60", "--max-transaction-seconds", "2")
    status, body, took = run(server, TIMEOUT_OFF[backend], sleep(backend, 12))
    assert status == 410, body
    assert body["error"]["code"] == protocol.TRANSACTION_EXPIRED
    assert body["error"]["timeout"] == "transaction"
    assert "longer than the limit of 2 s" in body["error"]["message"]
    assert took < 8, took  # not the 12 s the statement asked for
    assert body["error"].get("txn") is None  # rolled back by the server


def test_sqlite_rows_produced_lazily_are_under_the_timeout(start_server, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite makes rows while they are fetched")
    server = start_server("--statement-timeout", "1")
    # The first row comes at once; the next one after ~10^9 steps, which
    # SQLite runs while the server fetches the first page, after execute.
    lazy = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 3000000000) SELECT x FROM c WHERE x = 1 OR x = 2999999999")
    status, body, took = run(server, lazy)
    assert status == 422, body
    assert "interrupted" in body["error"]["message"]
    assert took < 5, took


def test_interrupted_mariadb_benchmark_fails_instead_of_answering_zero(
    start_server, backend: str
) -> None:
    if backend != "mysql":
        pytest.skip("MariaDB's BENCHMARK() answers 0 when max_statement_time stops it")
    server = start_server("--statement-timeout", "1")
    status, body, took = run(server, "SELECT BENCHMARK(1000000000, MD5('x'))")
    assert status == 422, body
    assert body["error"]["timeout"] == "statement"
    assert took < 5, took


def test_every_mysql_url_spelling_caps_the_first_lease_of_a_new_connection(
    start_server, backend: str, db_url: str
) -> None:
    if backend != "mysql":
        pytest.skip("the MySQL family's URL spellings")
    for scheme in ("mysql+pymysql", "mariadb+pymysql"):
        url = scheme + db_url[db_url.index("://"):]
        server = start_server("--statement-timeout", "2", url=url)
        results: list[tuple[int, Any, float]] = []

        def first_lease(server: ServerProcess = server, results: list = results) -> None:
            results.append(run(server, "SELECT @@max_statement_time, SLEEP(5)"))

        # Four leases at once: each is the first on a new pooled connection.
        threads = [threading.Thread(target=first_lease) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 4
        for status, body, took in results:
            assert status == 422, (scheme, body)
            assert body["error"].get("errno") == 1969, (scheme, body)  # max_statement_time
            assert took < 4.5, (scheme, took)
        status, body, _ = run(server, "SELECT @@max_statement_time")
        assert status == 200 and float(body["results"][1]["rows"][0][0]) == 2.0, body
