"""Connect-time session state through the proxy: sqlite3 shortcuts and the ``session`` prologue.

The server pools connections per transaction and resets each between
leases, so a ``SET``/``PRAGMA`` run in a ``connect`` event used to last one
transaction.  The shim connection records the ones the server accepted and
sends them with every ``begin``; the server runs them first on the leased
connection.  These tests run real servers (``--max-transactions 1``: every
transaction of every client runs on the same pooled server connection, so a
setting that leaked would show in the other client) and count round trips:
the prologue costs no request.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import session_proxy
from session_proxy import background
from session_proxy import dbapi as shim
from session_proxy.dialects.sqlite import SQLiteShimConnection
from session_proxy.errors import AccessDenied, RequestRejected
from session_proxy.wire import protocol
from tests.conftest import ServerProcess, backend_url


def _engine(server: ServerProcess, *hook: str) -> sa.Engine:
    """A proxy engine whose ``connect`` event runs ``hook`` statements."""
    engine = session_proxy.create_engine(server.url, token=server.token)
    if hook:

        @sa.event.listens_for(engine, "connect")
        def on_connect(dbapi_connection, connection_record) -> None:
            cursor = dbapi_connection.cursor()
            for sql in hook:
                cursor.execute(sql)
            cursor.close()

    return engine


def _round_trips(engine: sa.Engine) -> int:
    return session_proxy.stats(engine).snapshot().round_trips


# -- SQLite ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fidelity") / "fidelity.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE child (id INTEGER PRIMARY KEY,"
            " parent_id INTEGER NOT NULL REFERENCES parent(id));"
            "INSERT INTO parent VALUES (1);"
        )
    return path


@pytest.fixture(scope="module")
def sqlite_server(sqlite_file: Path) -> Iterator[ServerProcess]:
    with ServerProcess(f"sqlite:///{sqlite_file}", "--max-transactions", "1") as server:
        yield server


def _orphan_insert(engine: sa.Engine, child_id: int) -> bool:
    """Insert a child of a missing parent; True if the FK refused it."""
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                f"INSERT INTO child (id, parent_id) VALUES ({child_id}, 99)"
            )
    except sa.exc.IntegrityError:
        return True
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DELETE FROM child WHERE id = {child_id}")
    return False


def test_sqlalchemy_provisioning_idiom_enforces_fks_in_every_transaction(
    sqlite_server: ServerProcess,
) -> None:
    engine = session_proxy.create_engine(sqlite_server.url, token=sqlite_server.token)

    @sa.event.listens_for(engine, "connect")
    def fk_on(dbapi_connection, connection_record) -> None:  # SQLAlchemy's provision.py
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    plain = _engine(sqlite_server)
    try:
        with engine.connect() as connection:
            dbapi_connection = connection.connection.dbapi_connection
            assert isinstance(dbapi_connection, SQLiteShimConnection)
            assert dbapi_connection.session_statements == ["PRAGMA foreign_keys=ON"]
        for attempt in range(4):
            assert _orphan_insert(engine, 10 + attempt), f"transaction {attempt + 1}"
            # The same pooled server connection, reset in between: no FKs.
            assert not _orphan_insert(plain, 20 + attempt)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        with plain.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    finally:
        engine.dispose()
        plain.dispose()


def test_the_prologue_costs_no_request(sqlite_server: ServerProcess) -> None:
    hooked = _engine(sqlite_server, "PRAGMA foreign_keys=ON", "PRAGMA recursive_triggers=ON")
    plain = _engine(sqlite_server)
    try:
        for engine in (hooked, plain):
            with engine.connect() as connection:  # connect, initialize, hook
                connection.exec_driver_sql("SELECT 1")
                connection.commit()
        before = {engine: _round_trips(engine) for engine in (hooked, plain)}
        for engine in (hooked, plain):
            for _ in range(5):
                with engine.begin() as connection:
                    connection.exec_driver_sql("SELECT count(*) FROM parent").scalar()
        spent = {engine: _round_trips(engine) - before[engine] for engine in (hooked, plain)}
        # The SELECT; the COMMIT of a read-only transaction goes without waiting.
        assert spent[hooked] == spent[plain] == 5
        with hooked.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA recursive_triggers").scalar() == 1
    finally:
        hooked.dispose()
        plain.dispose()


def test_connection_shortcuts_return_their_cursor(
    sqlite_server: ServerProcess, sqlite_file: Path
) -> None:
    engine = _engine(sqlite_server)
    try:
        raw = engine.raw_connection()
        dbapi_connection = raw.dbapi_connection
        cursor = dbapi_connection.execute("SELECT ?, ?", (1, "a"))
        assert isinstance(cursor, shim.Cursor) and cursor.fetchall() == [(1, "a")]
        cursor = dbapi_connection.executemany(
            "INSERT INTO parent (id) VALUES (?)", [(100,), (101,)]
        )
        assert cursor.rowcount == 2
        dbapi_connection.rollback()
        assert dbapi_connection.execute(
            "SELECT count(*) FROM parent WHERE id >= 100"
        ).fetchone() == (0,)
        raw.close()
    finally:
        engine.dispose()


SCRIPT = """
CREATE TABLE script_log (id INTEGER PRIMARY KEY, note TEXT);  -- a comment; with a ;
/* a block comment; with a ; */
CREATE TRIGGER script_note AFTER INSERT ON script_log BEGIN
    UPDATE script_log SET note = note || ';seen' WHERE id = new.id;
END;
INSERT INTO script_log (id, note) VALUES (1, 'a;b');
INSERT INTO script_log (id, note) VALUES (2, 'c')
"""


def test_executescript_commits_first_and_runs_every_statement(
    sqlite_server: ServerProcess, sqlite_file: Path
) -> None:
    engine = _engine(sqlite_server)
    try:
        raw = engine.raw_connection()
        dbapi_connection = raw.dbapi_connection
        dbapi_connection.execute("INSERT INTO parent (id) VALUES (200)")  # open transaction
        stats = session_proxy.stats(engine)
        before = stats.snapshot().round_trips
        cursor = dbapi_connection.executescript(SCRIPT)
        # sqlite3 commits the open transaction, then runs the script: the
        # commit, then script + its commit in one request.
        assert stats.snapshot().round_trips - before == 2
        assert cursor.description is None and not dbapi_connection.in_transaction
        raw.close()
        with contextlib.closing(sqlite3.connect(sqlite_file)) as direct:
            assert direct.execute("SELECT id, note FROM script_log ORDER BY id").fetchall() == [
                (1, "a;b;seen"), (2, "c;seen"),
            ]
            assert direct.execute("SELECT count(*) FROM parent WHERE id = 200").fetchone() == (1,)
            direct.executescript(
                "DROP TABLE script_log; DELETE FROM parent WHERE id = 200;"
            )
    finally:
        engine.dispose()


def test_executescript_statements_are_guarded_each(sqlite_server: ServerProcess) -> None:
    engine = _engine(sqlite_server)
    try:
        raw = engine.raw_connection()
        with pytest.raises(AccessDenied) as refused:
            raw.dbapi_connection.executescript(
                "CREATE TABLE never_made (x INTEGER); ATTACH DATABASE 'x.db' AS x;"
            )
        assert refused.value is not None
        with pytest.raises(shim.OperationalError, match="no such table"):
            raw.dbapi_connection.execute("SELECT * FROM never_made")
        raw.close()
    finally:
        engine.dispose()


# -- PostgreSQL and MariaDB --------------------------------------------------


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    url = backend_url("postgresql", tmp_path_factory.mktemp("pg") / "unused.db")
    direct = sa.create_engine(url)
    with direct.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS fidelity_schema")
    direct.dispose()
    with ServerProcess(url, "--max-transactions", "1") as server:
        yield server


PG_HOOK = (
    "SET search_path TO fidelity_schema, public",
    "SET application_name = 'fidelity-app'",
)


def _pg_settings(engine: sa.Engine) -> tuple[str, str]:
    with engine.begin() as connection:
        return (
            connection.exec_driver_sql("SHOW search_path").scalar(),
            connection.exec_driver_sql("SHOW application_name").scalar(),
        )


def test_pg_connect_settings_hold_and_do_not_leak(pg_server: ServerProcess) -> None:
    hooked = _engine(pg_server, *PG_HOOK)
    plain = _engine(pg_server)
    try:
        _pg_settings(hooked), _pg_settings(plain)  # connected and initialized
        assert background.drain(10)  # their COMMITs count before the baseline
        before = {engine: _round_trips(engine) for engine in (hooked, plain)}
        resets_metric = "session_proxy_session_resets_with_commit_total"
        one_query_resets = pg_server.settled_metric(resets_metric)
        for _ in range(3):
            assert _pg_settings(hooked) == ("fidelity_schema, public", "fidelity-app")
            default = _pg_settings(plain)
            assert default[0] != "fidelity_schema, public" and default[1] != "fidelity-app"
        assert background.drain(10)
        spent = {engine: _round_trips(engine) - before[engine] for engine in (hooked, plain)}
        # Two SHOWs each; the COMMIT of a read-only transaction goes without waiting.
        assert spent[hooked] == spent[plain] == 6
        # Every commit reset the session in its own query (COMMIT; RESET ALL; ...):
        # the prologue did not make the lease look written, and what it set was reset.
        resets = pg_server.settled_metric(resets_metric)
        assert resets - one_query_resets == 6
    finally:
        hooked.dispose()
        plain.dispose()


PG_VICTIM = "sp_fidelity_victim"


def test_a_failing_prologue_statement_fails_step_zero_by_name(
    pg_server: ServerProcess,
) -> None:
    engine = _engine(pg_server)
    direct = sa.create_engine(backend_url("postgresql", Path("unused.db")))
    with direct.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {PG_VICTIM}")
        conn.exec_driver_sql(f"CREATE TABLE {PG_VICTIM} (id INTEGER)")
        conn.exec_driver_sql(f"INSERT INTO {PG_VICTIM} VALUES (1)")
    try:
        raw = engine.raw_connection()
        dbapi_connection = raw.dbapi_connection
        dbapi_connection.rollback()
        dbapi_connection.session_statements = ["SET statement_timeout = 'not a number'"]
        with pytest.raises(shim.DatabaseError, match="session statement 0"):
            dbapi_connection.cursor().execute("SELECT 1")
        dbapi_connection.rollback()
        dbapi_connection.session_statements = ["SET x.y = 1"] * (
            protocol.MAX_SESSION_STATEMENTS + 1
        )
        with pytest.raises(RequestRejected, match="'session' has 33"):
            dbapi_connection.cursor().execute("SELECT 1")
        dbapi_connection.session_statements = ["ALTER SYSTEM SET work_mem = '1MB'"]
        with pytest.raises(AccessDenied):
            dbapi_connection.cursor().execute("SELECT 1")
        # A second statement after the setting would run at every transaction's start.
        dbapi_connection.session_statements = [
            f"SET search_path TO public; DELETE FROM {PG_VICTIM}"
        ]
        with pytest.raises(RequestRejected, match=r"'session'\[0\] must be one SET or PRAGMA"):
            dbapi_connection.cursor().execute("SELECT 1")
        dbapi_connection.session_statements = []
        raw.invalidate()
        with direct.begin() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {PG_VICTIM}").scalar() == 1
            conn.exec_driver_sql(f"DROP TABLE {PG_VICTIM}")
    finally:
        engine.dispose()
        direct.dispose()


@pytest.fixture(scope="module")
def mysql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    url = backend_url("mysql", tmp_path_factory.mktemp("my") / "unused.db")
    with ServerProcess(url, "--max-transactions", "1") as server:
        yield server


def test_mariadb_sql_mode_holds_and_does_not_leak(mysql_server: ServerProcess) -> None:
    hooked = _engine(mysql_server, "SET SESSION sql_mode = 'ANSI_QUOTES'")
    plain = _engine(mysql_server)
    try:
        for _ in range(3):
            with hooked.begin() as connection:
                mode = connection.exec_driver_sql("SELECT @@session.sql_mode").scalar()
                assert mode == "ANSI_QUOTES"
            with plain.begin() as connection:
                mode = connection.exec_driver_sql("SELECT @@session.sql_mode").scalar()
                assert "ANSI_QUOTES" not in mode.split(",")
    finally:
        hooked.dispose()
        plain.dispose()
