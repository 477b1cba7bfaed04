"""Session state one client leaves on a pooled server connection never reaches another."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import session_proxy

from .conftest import ServerProcess


@pytest.fixture
def one_connection_server(db_url: str, backend: str):
    if backend != "postgresql":
        pytest.skip("the server resets sessions on PostgreSQL (DISCARD ALL) only")
    server = ServerProcess(db_url, "--max-transactions", "1")  # one pooled connection
    yield server
    server.stop()


def test_settings_and_temp_tables_do_not_leak(one_connection_server: ServerProcess) -> None:
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
