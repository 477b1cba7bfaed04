"""A transaction whose database connection was killed ends at once on rollback or commit.

PostgreSQL's ``pg_terminate_backend`` and MySQL/MariaDB's ``KILL`` close a
leased connection from the database side.  The client's rollback must end
the lease there and then (200: there is no transaction left to keep), a
commit must answer a clear database error and end it too, and the dead
connection must not go back to the pool: the next requests work.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa

from session_proxy.wire import protocol
from tests.conftest import ServerProcess, scratch_table

TIMEOUT = 30
TABLE = "sp_terminated"


@pytest.fixture
def killable(backend: str, db_url: str, server: ServerProcess) -> Iterator[sa.Engine]:
    if backend == "sqlite":
        pytest.skip("SQLite has no server-side connections to terminate")
    with scratch_table(db_url, TABLE, "x INTEGER") as engine:
        yield engine


def post(server: ServerProcess, txn: str | None, steps: list[dict]) -> requests.Response:
    return requests.post(
        server.url + protocol.PIPELINE_PATH,
        json=protocol.pipeline_request(txn, steps),
        headers=server.headers,
        timeout=TIMEOUT,
    )


def open_transactions(server: ServerProcess) -> int:
    return int(server.metric("session_proxy_open_transactions"))


def open_and_kill(server: ServerProcess, backend: str, engine: sa.Engine) -> str:
    """Open a lease that inserted a row, then kill its connection from outside."""
    marker = "%s"
    pid_sql = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    response = post(server, None, [
        {"op": "execute", "sql": f"INSERT INTO {TABLE} (x) VALUES ({marker})", "params": [1]},
        {"op": "execute", "sql": pid_sql},
    ])
    assert response.status_code == 200, response.text
    body = response.json()
    pid = body["results"][1]["rows"][0][0]
    with engine.connect() as conn:
        if backend == "postgresql":
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        else:
            conn.execute(sa.text(f"KILL {int(pid)}"))
    assert open_transactions(server) >= 1
    return body["txn"]


def rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one()


def still_serves(server: ServerProcess) -> None:
    """Later transactions work: the dead connection was not pooled again."""
    for _ in range(4):
        response = post(server, None, [{"op": "execute", "sql": "SELECT 1"}, {"op": "rollback"}])
        assert response.status_code == 200, response.text


def test_rollback_after_the_backend_was_killed_ends_the_lease(
    server: ServerProcess, backend: str, killable: sa.Engine
) -> None:
    txn = open_and_kill(server, backend, killable)
    response = post(server, txn, [{"op": "rollback"}])
    assert response.status_code == 200, response.text
    assert response.json()["txn"] is None
    assert open_transactions(server) == 0
    # The lease is gone, not waiting for the reaper.
    again = post(server, txn, [{"op": "rollback"}])
    assert again.status_code == 404, again.text
    assert rows(killable) == 0
    still_serves(server)


def test_commit_after_the_backend_was_killed_fails_clearly_and_ends_the_lease(
    server: ServerProcess, backend: str, killable: sa.Engine
) -> None:
    txn = open_and_kill(server, backend, killable)
    response = post(server, txn, [{"op": "commit"}])
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == protocol.DATABASE_ERROR
    assert error.get("txn") is None
    assert open_transactions(server) == 0
    assert rows(killable) == 0
    still_serves(server)


def test_a_statement_after_the_kill_fails_then_rollback_ends_the_lease(
    server: ServerProcess, backend: str, killable: sa.Engine
) -> None:
    txn = open_and_kill(server, backend, killable)
    failed = post(server, txn, [{"op": "execute", "sql": "SELECT 1"}])
    assert failed.status_code == 422, failed.text
    assert failed.json()["error"]["dbapi_class"] in ("OperationalError", "InterfaceError")
    response = post(server, txn, [{"op": "rollback"}])
    assert response.status_code == 200, response.text
    assert open_transactions(server) == 0
    still_serves(server)
