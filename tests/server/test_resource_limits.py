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

from session_proxy.wire import protocol
from session_proxy.wire.codec import dumps
from session_proxy_server.outcomes import Outcome, OutcomeStore
from tests.conftest import ServerProcess


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
    from session_proxy_server.cli import build_parser

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


#: A statement that catches every cancel and goes on for ``n`` seconds.
def ignores_cancel(backend: str, seconds: int) -> list[str]:
    if backend == "postgresql":
        return [
            "DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN "
            f"WHILE clock_timestamp() < t0 + interval '{seconds} seconds' LOOP "
            "BEGIN PERFORM pg_sleep(1); EXCEPTION WHEN query_canceled THEN NULL; END; "
            "END LOOP; END $$"
        ]
    if backend == "mysql":
        return [
            "CREATE OR REPLACE PROCEDURE sp_ignore_cancel() BEGIN "
            "DECLARE t0 DATETIME(6) DEFAULT NOW(6); "
            "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END; "
            f"WHILE NOW(6) < t0 + INTERVAL {seconds} SECOND DO DO SLEEP(1); END WHILE; END",
            "CALL sp_ignore_cancel()",
        ]
    return [sleep(backend, seconds)]  # SQLite's interrupt cannot be caught


@pytest.mark.parametrize("flags, status", [
    (("--statement-timeout", "1"), 422),
    (("--statement-timeout", "60", "--max-transaction-seconds", "2"), 410),
])
def test_a_statement_that_ignores_its_cancel_is_ended(
    start_server, backend: str, flags: tuple[str, ...], status: int
) -> None:
    """Red team: PL/pgSQL or a MySQL handler caught the cancel and ran on 15 s past 2 s."""
    server = start_server(*flags)
    *setup, statement = ignores_cancel(backend, 20)
    for sql in setup:
        pipeline(server, [{"op": protocol.BEGIN},
                          {"op": protocol.EXECUTE, "sql": sql, "params": None},
                          {"op": protocol.COMMIT}])
    got, body, took = run(server, TIMEOUT_OFF[backend], statement)
    assert got == status, body
    assert took < 9, took  # not the 20 s the statement would run
    assert run(server, "SELECT 1")[0] == 200  # and the server serves on


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


# -- long results come from server-side cursors ---------------------------------------------


def test_which_statements_a_cursor_runs() -> None:
    from session_proxy_server.cursors import cursorable

    for sql in (
        "SELECT a FROM t",
        "  /* c */ -- d\n (SELECT 1) UNION (SELECT 2)",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "VALUES (1), (2)",
        "TABLE t",
        "select last_update from t",
    ):
        assert cursorable(sql), sql
    for sql in (
        "INSERT INTO t VALUES (1) RETURNING id",
        "UPDATE t SET a = 1 RETURNING a",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT a INTO b FROM t",
        "SELECT 1; DELETE FROM t",
        "EXPLAIN SELECT 1",
        "SHOW TABLES",
        "",
    ):
        assert not cursorable(sql), sql


def _long_select(backend: str, rows: int, counter: str | None = None) -> str:
    value = counter or "0"
    if backend == "postgresql":
        return f"SELECT g, {value}, repeat('x', 200) FROM generate_series(1, {rows}) AS g"
    if backend == "mysql":
        return f"SELECT seq, {value}, repeat('x', 200) FROM seq_1_to_{rows} ORDER BY seq"
    return ("WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
            f"WHERE n < {rows}) SELECT n, {value}, hex(zeroblob(100)) FROM g")


def test_rows_are_read_from_the_database_a_page_at_a_time(
    start_server, backend: str, direct_engine: sa.Engine
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no sequences; its cursors step lazily anyway")
    with direct_engine.begin() as conn:
        conn.exec_driver_sql("DROP SEQUENCE IF EXISTS sp_rows_read")
        conn.exec_driver_sql("CREATE SEQUENCE sp_rows_read" + (
            " NOCACHE" if backend == "mysql" else ""))
    counter = "nextval('sp_rows_read')" if backend == "postgresql" else "NEXTVAL(sp_rows_read)"
    server = start_server("--page-size", "1000")
    try:
        status, body = pipeline(server, [
            {"op": protocol.BEGIN},
            {"op": protocol.EXECUTE, "sql": _long_select(backend, 200_000, counter),
             "params": None},
        ])
        assert status == 200, body
        first = body["results"][1]
        assert len(first["rows"]) == 1000 and "cursor" in first
        assert first["rowcount"] == -1  # not known until every row is read
        with direct_engine.connect() as conn:
            if backend == "postgresql":
                made = conn.exec_driver_sql("SELECT last_value FROM sp_rows_read").scalar()
            else:
                made = conn.exec_driver_sql("SELECT NEXTVAL(sp_rows_read)").scalar() - 1
        # PostgreSQL makes exactly the rows fetched (a page and one peeked);
        # MariaDB a page plus what the socket buffers hold. Buffered: 200,000.
        assert made <= (1001 if backend == "postgresql" else 50_000), made
        status, body = pipeline(server, [{"op": protocol.ROLLBACK}], body["txn"])
        assert status == 200, body
    finally:
        with direct_engine.begin() as conn:
            conn.exec_driver_sql("DROP SEQUENCE IF EXISTS sp_rows_read")


def test_other_statements_between_the_pages_of_a_long_result(
    start_server, backend: str
) -> None:
    server = start_server("--page-size", "1000")
    status, body = pipeline(server, [
        {"op": protocol.BEGIN},
        {"op": protocol.EXECUTE, "sql": _long_select(backend, 5500), "params": None},
        {"op": protocol.EXECUTE, "sql": _long_select(backend, 3500), "params": None},
    ])
    assert status == 200, body
    txn = body["txn"]
    first, second = body["results"][1], body["results"][2]
    got = {first["cursor"]: [row[0] for row in first["rows"]],
           second["cursor"]: [row[0] for row in second["rows"]]}
    open_cursors = [first["cursor"], second["cursor"]]
    while open_cursors:
        for cursor in list(open_cursors):
            # A statement between two fetches: MySQL spills the open results.
            status, body = pipeline(server, [
                {"op": protocol.EXECUTE, "sql": "SELECT 1", "params": None},
                {"op": protocol.FETCH, "cursor": cursor, "n": 1000},
            ], txn)
            assert status == 200, body
            page = body["results"][1]
            got[cursor] += [row[0] for row in page["rows"]]
            if page["done"]:
                open_cursors.remove(cursor)
    assert got[first["cursor"]] == list(range(1, 5501))
    assert got[second["cursor"]] == list(range(1, 3501))
    status, body = pipeline(server, [{"op": protocol.ROLLBACK}], txn)
    assert status == 200, body


def test_finished_postgresql_cursors_do_not_pile_up(start_server, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL cursors live until closed or the transaction ends")
    server = start_server()
    steps = [{"op": protocol.BEGIN}] + [
        {"op": protocol.EXECUTE, "sql": "SELECT %s::int AS n", "params": [n]} for n in range(200)
    ]
    steps.append({"op": protocol.EXECUTE, "sql": "SELECT count(*) FROM pg_cursors",
                  "params": None})
    status, body = pipeline(server, steps + [{"op": protocol.ROLLBACK}])
    assert status == 200, body
    assert [r["rows"] for r in body["results"][1:4]] == [[[0]], [[1]], [[2]]]
    assert body["results"][1]["rowcount"] == 1
    # One finished cursor (its name reused next) and the one counting them.
    assert body["results"][-2]["rows"][0][0] <= 2


def test_statements_a_cursor_cannot_run_still_answer_every_row(
    start_server, backend: str, direct_engine: sa.Engine
) -> None:
    with direct_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sp_returning")
        conn.exec_driver_sql("CREATE TABLE sp_returning (id INTEGER PRIMARY KEY, v INTEGER)")
    server = start_server("--page-size", "100")
    try:
        if backend == "mysql":
            sql = "SELECT seq FROM seq_1_to_250 FOR UPDATE"  # locking: buffered
        else:
            source = ("generate_series(1, 250) AS g" if backend == "postgresql" else
                      "(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c "
                      "WHERE g < 250) SELECT g FROM c)")
            sql = f"INSERT INTO sp_returning SELECT g, g FROM {source} RETURNING id"
        status, body = pipeline(server, [
            {"op": protocol.BEGIN},
            {"op": protocol.EXECUTE, "sql": sql, "params": None},
        ])
        assert status == 200, body
        txn, first = body["txn"], body["results"][1]
        ids = [row[0] for row in first["rows"]]
        while True:
            status, body = pipeline(server, [
                {"op": protocol.FETCH, "cursor": first["cursor"], "n": 100}], txn)
            assert status == 200, body
            ids += [row[0] for row in body["results"][0]["rows"]]
            if body["results"][0]["done"]:
                break
        assert sorted(ids) == list(range(1, 251))
        pipeline(server, [{"op": protocol.ROLLBACK}], txn)
    finally:
        with direct_engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS sp_returning")


# -- slow clients -------------------------------------------------------------------------------


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_half_open_connections_are_bounded_and_timed_out(start_server, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the HTTP server does not depend on the backend")
    import socket

    server = start_server("--socket-timeout", "2", "--max-connections", "32")
    held = []
    try:
        for _ in range(100):  # three times the bound
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: slow\r\nX-Half: ")
            held.append(sock)
        time.sleep(0.5)
        threads = _threads(server.process.pid)
        started = time.monotonic()
        health = requests.get(server.url + protocol.HEALTH_PATH, timeout=30)
        waited = time.monotonic() - started
        assert health.status_code == 200
        # Without the bound: one thread per connection (100 more).
        assert threads <= 32 + 16, threads
        # 100 held in batches of 32, each dropped after 2 s: four batches at most.
        assert waited < 4 * 2 + 3, waited
        # Every one is accepted in its turn and dropped after its 2 s.
        deadline = time.monotonic() + 15
        open_ones = list(held)
        while open_ones and time.monotonic() < deadline:
            sock = open_ones[0]
            sock.settimeout(0.2)
            try:
                if sock.recv(1) != b"":
                    break  # an answer to half a request: wrong
            except TimeoutError:
                continue
            except OSError:
                pass
            open_ones.pop(0)
        assert not open_ones, f"{len(open_ones)} half-open connections still held"
    finally:
        for sock in held:
            sock.close()
