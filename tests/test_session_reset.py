"""Session state one client leaves on a pooled server connection never reaches another."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import session_proxy

from .conftest import ServerProcess


@pytest.fixture
def one_connection_server(db_url: str, backend: str):
    if backend == "sqlite":
        pytest.skip("SQLite connections keep no session settings a client can change")
    server = ServerProcess(
        db_url, "--max-transactions", "1", "--statement-timeout", "7"
    )  # one pooled connection
    yield server
    server.stop()


def test_settings_and_temp_tables_do_not_leak(
    one_connection_server: ServerProcess, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL settings; MySQL has its own test")
    server = one_connection_server
    first = session_proxy.create_engine(server.url, token=server.token)
    second = session_proxy.create_engine(server.url, token=server.token)
    try:
        with first.connect() as conn:
            default_path = conn.exec_driver_sql("SHOW search_path").scalar_one()
            conn.exec_driver_sql("SET search_path TO somewhere_else, public")
            conn.exec_driver_sql("CREATE TEMP TABLE leaked (x int)")
            assert conn.exec_driver_sql("SHOW search_path").scalar_one() == (
                "somewhere_else, public"
            )
            conn.commit()
        with second.connect() as conn:  # necessarily the same server connection
            assert conn.exec_driver_sql("SHOW search_path").scalar_one() == default_path
            leaked = conn.execute(sa.text(
                "SELECT count(*) FROM pg_class WHERE relname = 'leaked' AND relpersistence = 't'"
            )).scalar_one()
            assert leaked == 0
            # psycopg prepares a statement run often enough; DISCARD ALL between
            # transactions must not leave it using a deallocated one.
            for _ in range(3):
                for _ in range(8):
                    assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
                conn.commit()
    finally:
        first.dispose()
        second.dispose()


def test_mysql_session_state_does_not_leak(
    one_connection_server: ServerProcess, backend: str
) -> None:
    """COM_RESET_CONNECTION between leases, then the server's own settings again."""
    if backend != "mysql":
        pytest.skip("MySQL session state")
    server = one_connection_server
    first = session_proxy.create_engine(server.url, token=server.token)
    second = session_proxy.create_engine(server.url, token=server.token)
    state = "SELECT @@session.sql_mode, @@session.max_statement_time, @var, @@autocommit"
    try:
        with second.connect() as conn:
            default_mode = conn.exec_driver_sql("SELECT @@session.sql_mode").scalar_one()
            conn.commit()
        with first.connect() as conn:
            conn.exec_driver_sql("SET SESSION sql_mode = ''")
            conn.exec_driver_sql("SET SESSION max_statement_time = 0")
            conn.exec_driver_sql("SET @var = 'left behind'")
            conn.exec_driver_sql("CREATE TEMPORARY TABLE leaked (x int)")
            assert conn.exec_driver_sql(state).one() == ("", 0.0, "left behind", 0)
            conn.commit()
        with second.connect() as conn:  # necessarily the same server connection
            assert conn.exec_driver_sql(state).one() == (default_mode, 7.0, None, 0)
            with pytest.raises(sa.exc.ProgrammingError, match="leaked"):
                conn.exec_driver_sql("SELECT * FROM leaked")
            conn.rollback()
        # Autocommit stayed off: a rolled-back insert leaves nothing.
        with second.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS sp_reset (x int)")
            conn.commit()
            conn.exec_driver_sql("INSERT INTO sp_reset VALUES (1)")
            conn.rollback()
            assert conn.exec_driver_sql("SELECT count(*) FROM sp_reset").scalar_one() == 0
            conn.exec_driver_sql("DROP TABLE sp_reset")
            conn.commit()
    finally:
        first.dispose()
        second.dispose()
