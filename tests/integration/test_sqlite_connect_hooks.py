"""What Airflow's SQLite connect hook does, through ``sessionproxy://``.

Airflow registers, for every new SQLite connection: ``PRAGMA foreign_keys=ON``,
``PRAGMA journal_mode=WAL`` and ``create_function("uuid4", ...)``.  Through
the proxy the first two reach the server's SQLite (WAL is file-wide and
persistent, so the guard lets exactly that mode through, on a database
already in WAL mode); the function is recorded and warned about, and SQL
that calls it fails on the server.  A database not in WAL mode when the
server started keeps its journal mode: the server's outcome file is
attached to it, and commits stay atomic across both files only outside WAL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from session_proxy.dialects import sqlite as proxy_sqlite
from session_proxy.dialects.sqlite import FunctionNotShipped, SQLiteShimConnection
from session_proxy.errors import AccessDenied
from session_proxy_server.testing import ServerProcess


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: Path = tmp_path_factory.mktemp("hooks") / "hooks.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # as docs/airflow.md says
    with ServerProcess(f"sqlite:///{path}") as server:
        yield server


@pytest.fixture(scope="module")
def rollback_journal_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, Path]]:
    path: Path = tmp_path_factory.mktemp("hooks-delete") / "hooks.db"
    with ServerProcess(f"sqlite:///{path}") as server:
        yield server, path


def airflow_like_engine(server: ServerProcess) -> sa.Engine:
    engine = sa.create_engine(f"sessionproxy://:{server.token}@127.0.0.1:{server.port}/")

    @sa.event.listens_for(engine, "connect")
    def set_sqlite_pragma(dbapi_connection, connection_record) -> None:  # Airflow's hook
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
        dbapi_connection.create_function("uuid4", 0, lambda: str(uuid.uuid4()))

    return engine


def test_the_hook_runs_and_wal_reaches_the_file(
    sqlite_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy_sqlite, "_warned_functions", set())  # warned once per process
    engine = airflow_like_engine(sqlite_server)
    try:
        with pytest.warns(FunctionNotShipped, match="uuid4"), engine.connect() as connection:
            dbapi_connection = connection.connection.dbapi_connection
            assert isinstance(dbapi_connection, SQLiteShimConnection)
            assert dbapi_connection.functions == {"uuid4": 0}
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            with pytest.raises(sa.exc.OperationalError, match="no such function: uuid4"):
                connection.exec_driver_sql("SELECT uuid4()")
    finally:
        engine.dispose()


@pytest.mark.parametrize("sql", ["PRAGMA journal_mode=DELETE", "PRAGMA journal_mode=OFF"])
def test_other_journal_modes_are_refused(sqlite_server: ServerProcess, sql: str) -> None:
    engine = sa.create_engine(
        f"sessionproxy://:{sqlite_server.token}@127.0.0.1:{sqlite_server.port}/"
    )
    try:
        with engine.connect() as connection, pytest.raises(sa.exc.ProgrammingError) as caught:
            connection.exec_driver_sql(sql)
        assert isinstance(caught.value.orig, AccessDenied)
    finally:
        engine.dispose()


@pytest.mark.parametrize("sql", [
    "PRAGMA journal_mode=WAL",
    "PRAGMA main.journal_mode = 'wal'",
    "pragma JOURNAL_MODE(\"WAL\")",
])
def test_wal_is_refused_where_the_outcome_file_is_attached(
    rollback_journal_server: tuple[ServerProcess, Path], sql: str
) -> None:
    """SQLite's authorizer sees every spelling; the file keeps its rollback journal."""
    server, path = rollback_journal_server
    engine = sa.create_engine(f"sessionproxy://:{server.token}@127.0.0.1:{server.port}/")
    try:
        with engine.connect() as connection, pytest.raises(sa.exc.DBAPIError, match="authoriz"):
            connection.exec_driver_sql(sql)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
    finally:
        engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert path.with_name("hooks.db.session_proxy").exists()
