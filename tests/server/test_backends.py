"""Backend profiles (server/backends): the registry, the protocol, and each profile on its database.

The profile methods are exercised against the real databases: the cancel the
watchdog uses stops a running statement, the statement deadline interrupts
SQLite, the reset clears session state, and the outcome table lands where
the profile says.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from session_proxy_server import backends
from session_proxy_server.backends.base import Backend
from session_proxy_server.config import ServerConfig
from session_proxy_server.database import create_engine_for
from session_proxy_server.outcomes import OutcomeStore

#: A statement that runs far longer than any test waits, per backend family.
SLOW = {
    "sqlite": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT count(*) FROM n"
    ),
    "postgresql": "SELECT pg_sleep(60)",
    "mysql": "SELECT SLEEP(60)",
}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite:///x.db", "sqlite"),
        ("sqlite+pysqlite:///x.db", "sqlite"),
        ("postgresql+psycopg://u@h/d", "postgresql"),
        ("mysql+pymysql://u@h/d", "mysql"),
        ("mariadb+pymysql://u@h/d", "mysql"),
    ],
)
def test_registry_maps_each_served_url_to_its_profile(url: str, name: str) -> None:
    backend = backends.for_url(url)
    assert backend.name == name
    assert sa.engine.make_url(url).get_backend_name() in backend.dialect_names


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql+psycopg2://u@h/d", "'psycopg'"),
        ("mysql+mysqldb://u@h/d", "'pymysql'"),
        ("oracle+oracledb://u@h/d", "'oracle'"),
    ],
)
def test_registry_refuses_what_it_does_not_serve(url: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        backends.for_url(url)


def _protocol_members() -> dict[str, Any]:
    members = {}
    for name, value in vars(Backend).items():
        if name.startswith("_"):
            continue
        members[name] = value
    for name in Backend.__annotations__:
        members.setdefault(name, None)
    return members


@pytest.mark.parametrize("backend", backends.BUILTIN, ids=lambda b: b.name)
def test_every_profile_implements_the_protocol(backend: Backend) -> None:
    members = _protocol_members()
    assert {"reset_session", "canceller", "open_stream", "engine_kwargs"} <= set(members)
    for name, declared in members.items():
        assert hasattr(backend, name), f"{backend.name} lacks {name}"
        if callable(declared):
            wanted = list(inspect.signature(declared).parameters)[1:]
            got = list(inspect.signature(getattr(backend, name)).parameters)
            assert got == wanted, f"{backend.name}.{name}{got} != {wanted}"


def test_dialect_names_do_not_overlap() -> None:
    names = [name for backend in backends.BUILTIN for name in backend.dialect_names]
    assert len(names) == len(set(names))
    assert set(backends.by_dialect()) == {"sqlite", "postgresql", "mysql", "mariadb"}


@pytest.fixture
def engine(db_url: str) -> Any:
    engine = create_engine_for(db_url, ServerConfig(max_transactions=2))
    yield engine
    engine.dispose()


def _kill_connect(engine: sa.Engine) -> Any:
    def connect() -> Any:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        return engine.dialect.connect(*cargs, **cparams)

    return connect


def _stop_while_running(conn: Any, backend_name: str, stop: Any) -> dict[str, Any]:
    """Run a minute-long statement on ``conn`` in a thread, call ``stop``, and wait.

    Returns what the statement gave: ``rows`` or ``error``.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        cursor = conn.cursor()
        try:
            cursor.execute(SLOW[backend_name])
            outcome["rows"] = cursor.fetchall()
        except Exception as exc:  # noqa: BLE001 - the test reads it
            outcome["error"] = exc
        finally:
            try:
                cursor.close()
            except Exception:  # noqa: BLE001, S110 - the session may be gone
                pass

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive(), outcome
    stop()
    thread.join(30)
    assert not thread.is_alive()
    return outcome


def test_canceller_stops_a_running_statement(engine: sa.Engine) -> None:
    """The cancel the watchdog uses ends a statement that would run a minute."""
    backend = backends.for_engine(engine)
    pooled = engine.raw_connection()
    try:
        conn = pooled.dbapi_connection
        cancel = backend.canceller(conn, _kill_connect(engine))
        started = time.monotonic()
        outcome = _stop_while_running(conn, backend.name, cancel)
        # Well under the minute the statement would take.
        assert time.monotonic() - started < 30
        # MySQL's interrupted SLEEP() answers 1 instead of raising.
        assert "error" in outcome or [tuple(row) for row in outcome["rows"]] == [(1,)]
        pooled.rollback()
    finally:
        pooled.close()


def test_statement_deadline_interrupts_sqlite_only(engine: sa.Engine) -> None:
    backend = backends.for_engine(engine)
    pooled = engine.raw_connection()
    try:
        conn = pooled.dbapi_connection
        if backend.name != "sqlite":
            # Elsewhere the database's own timeout and the watchdog stop it:
            # the deadline must not touch the connection at all.
            with backend.statement_deadline(conn, 0.0):
                cursor = conn.cursor()
                cursor.execute("SELECT 1")
                assert [tuple(row) for row in cursor.fetchall()] == [(1,)]
                cursor.close()
            return
        with pytest.raises(engine.dialect.loaded_dbapi.OperationalError, match="interrupt"):
            with backend.statement_deadline(conn, 0.2):
                conn.execute(SLOW["sqlite"]).fetchall()
        # The handler is gone afterwards: a long-ish statement runs to the end.
        assert conn.execute("SELECT 1").fetchall() == [(1,)]
    finally:
        pooled.close()


def test_reset_session_clears_a_temporary_table(engine: sa.Engine) -> None:
    backend = backends.for_engine(engine)
    pooled = engine.raw_connection()
    try:
        conn = pooled.dbapi_connection
        cursor = conn.cursor()
        cursor.execute("CREATE TEMPORARY TABLE profile_left_behind (x INTEGER)")
        cursor.execute("INSERT INTO profile_left_behind VALUES (1)")
        cursor.close()
        conn.commit()
        backend.reset_session(conn, 300.0, pooled.info)
        cursor = conn.cursor()
        with pytest.raises(engine.dialect.loaded_dbapi.Error):
            cursor.execute("SELECT x FROM profile_left_behind")
        cursor.close()
        conn.rollback()
    finally:
        pooled.close()


def test_outcome_table_goes_where_the_profile_says(engine: sa.Engine) -> None:
    backend = backends.for_engine(engine)
    store = OutcomeStore(engine, window_seconds=60)
    try:
        # PostgreSQL and MySQL: a schema of its own; SQLite: an attached file.
        assert store.table.schema == "session_proxy"
        assert "session_proxy_outcomes" not in sa.inspect(engine).get_table_names()
        assert (backend.outcome_attached_schema(engine) is None) == backend.outcome_in_schema
        if backend.outcome_table_shared:
            assert store.scope == engine.url.database
        else:
            assert store.scope == ""
    finally:
        store.stop()


def test_terminator_ends_the_session(engine: sa.Engine) -> None:
    """The watchdog's escalation: the statement stops and, off SQLite, the session is gone."""
    backend = backends.for_engine(engine)
    pooled = engine.raw_connection()
    try:
        conn = pooled.dbapi_connection
        terminate = backend.terminator(conn, _kill_connect(engine))
        outcome = _stop_while_running(conn, backend.name, terminate)
        if backend.name == "sqlite":
            assert "error" in outcome
            assert conn.execute("SELECT 1").fetchall() == [(1,)]
            return
        # The session itself ended: the next statement on it fails.
        with pytest.raises(engine.dialect.loaded_dbapi.Error):
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
        pooled.invalidate()
    finally:
        pooled.close()


def test_transaction_wrote_asks_the_database(engine: sa.Engine) -> None:
    """PostgreSQL's transaction id and MySQL's handler counters; SQLite cannot say."""
    backend = backends.for_engine(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS profile_wrote"))
        connection.execute(sa.text("CREATE TABLE profile_wrote (x INTEGER)"))
    pooled = engine.raw_connection()
    try:
        conn = pooled.dbapi_connection
        backend.reset_session(conn, 300.0, pooled.info)
        cursor = conn.cursor()
        cursor.execute("SELECT count(*) FROM profile_wrote")
        cursor.fetchall()
        read_only = backend.transaction_wrote(conn)
        cursor.execute("INSERT INTO profile_wrote VALUES (1)")
        wrote = backend.transaction_wrote(conn)
        cursor.close()
        conn.rollback()
        if backend.name == "sqlite":
            assert (read_only, wrote) == (None, None)
        else:
            assert (read_only, wrote) == (False, True)
    finally:
        pooled.close()
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS profile_wrote"))


def test_sqlite_in_wal_mode_keeps_the_outcome_table_in_its_own_file(tmp_path: Path) -> None:
    """WAL commits each attached file atomically, not the set: no separate outcome file."""
    path = tmp_path / "wal.db"
    with sqlite3.connect(path) as probe:
        assert probe.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    engine = create_engine_for(f"sqlite:///{path}", ServerConfig(max_transactions=2))
    store = OutcomeStore(engine, window_seconds=60)
    try:
        assert store.table.schema is None
        assert "session_proxy_outcomes" in sa.inspect(engine).get_table_names()
        assert not (tmp_path / "wal.db.session_proxy").exists()
    finally:
        store.stop()
        engine.dispose()


def test_sqlite_outcome_file_commits_with_the_data(tmp_path: Path) -> None:
    """In rollback-journal mode one commit covers both files (SQLite's super-journal)."""
    path = tmp_path / "app.db"
    engine = create_engine_for(f"sqlite:///{path}", ServerConfig(max_transactions=2))
    store = OutcomeStore(engine, window_seconds=60)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA main.journal_mode").scalar() == "delete"
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.commit()
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            record = store.table.insert().values(
                subject="s", idem_key="k", created=0.0, body="{}", status=200)
            conn.execute(record)
            conn.rollback()  # one transaction: both files roll back
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            assert conn.execute(sa.select(sa.func.count()).select_from(store.table)).scalar() == 0
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            conn.execute(record)
            conn.commit()
        with sqlite3.connect(tmp_path / "app.db.session_proxy") as outcome_file:
            assert outcome_file.execute("SELECT idem_key FROM session_proxy_outcomes").fetchall() \
                == [("k",)]
    finally:
        store.stop()
        engine.dispose()
    assert (tmp_path / "app.db.session_proxy").exists()
