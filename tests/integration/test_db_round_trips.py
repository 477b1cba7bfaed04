"""A proxied transaction costs the database as many round trips as direct use.

The server's ``--db-url`` points at the database THROUGH a latency relay
(:class:`session_proxy_bench.relay.Relay`, 0 ms delay), which counts the
request/response turns on every database connection.  Direct SQLAlchemy
goes through a relay of its own.  After a warm-up (connections made, pools
filled), one transaction's turns are the difference of the count before
and after it: BEGIN + statements + COMMIT, with no pre-ping on checkout and
no session reset inside a transaction of its own.

PostgreSQL: exactly as many as direct.  The outcome record (inserted only
when the transaction wrote, which the same statement asks), the ``COMMIT``
and the session reset go in one simple query.  MySQL/MariaDB: two more
than direct, and this test pins them so that any new one fails it: PyMySQL sends one statement
per round trip (no multi-statements), so the question whether the
transaction wrote (``SHOW SESSION STATUS``) or the outcome record is a
round trip of its own, and the session reset (``COM_RESET_CONNECTION``,
then the statement timeout set again) runs after every transaction, after
the response was written (the pool's rollback on return, which direct use
pays, is skipped after it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import session_proxy
from session_proxy_bench.relay import Relay
from tests.conftest import ServerProcess, backend_url

TABLE = "sp_round_trips"


def through(relay: Relay, db_url: str) -> str:
    """``db_url`` with its host and port replaced by the relay's."""
    url = make_url(db_url).set(host="127.0.0.1", port=relay.port)
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=["postgresql", "mysql"])
def database(request: pytest.FixtureRequest, sqlite_path: Path) -> str:
    return backend_url(request.param, sqlite_path)


@pytest.fixture
def table(database: str) -> Iterator[None]:
    engine = sa.create_engine(database)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(sa.text(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, v VARCHAR(20))"))
    yield
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
    engine.dispose()


def _select(conn: sa.Connection, n: int) -> None:
    assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def _insert(conn: sa.Connection, n: int) -> None:
    conn.execute(sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (:id, 'x')"), {"id": n})


def turns_per_transaction(
    engine: sa.Engine, relay: Relay, body: Callable[[sa.Connection, int], None]
) -> list[int]:
    """Turns of three transactions running ``body``, after two warm-up ones."""
    counts = []
    for n in range(5):
        before = relay.settled_turns()
        with engine.begin() as conn:
            body(conn, n)
        counts.append(relay.settled_turns() - before)
    return counts[2:]


@pytest.mark.parametrize("body", [_select, _insert], ids=["select", "insert"])
def test_proxied_transaction_costs_as_many_round_trips_as_direct(
    database: str, table: None, body: Callable
) -> None:
    url = make_url(database)
    with Relay(url.port, 0.0, target_host=url.host) as relay:
        direct = sa.create_engine(through(relay, database))
        direct_turns = turns_per_transaction(direct, relay, body)
        direct.dispose()
    with sa.create_engine(database).begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {TABLE}"))
    with Relay(url.port, 0.0, target_host=url.host) as relay:
        server = ServerProcess(through(relay, database), "--max-transactions", "1")
        try:
            engine = session_proxy.create_engine(server.url, token=server.token)
            proxied = turns_per_transaction(engine, relay, body)
            engine.dispose()
        finally:
            server.stop()
    extra = {"postgresql": 0, "mysql": 2}[url.get_backend_name()]
    assert proxied == [turns + extra for turns in direct_turns], (
        f"proxied {proxied}, direct {direct_turns}"
    )


@pytest.fixture
def pg_url(sqlite_path: Path) -> str:
    return backend_url("postgresql", sqlite_path)


def test_a_connection_idle_past_the_threshold_is_pinged(pg_url: str) -> None:
    """Idle longer than ``--pre-ping-idle-seconds`` (here between transactions,
    which :func:`settled` spaces by 0.2 s): the checkout pings, one turn more."""
    url = make_url(pg_url)
    with Relay(url.port, 0.0, target_host=url.host) as relay:
        server = ServerProcess(
            through(relay, pg_url), "--max-transactions", "1", "--pre-ping-idle-seconds", "0.05"
        )
        try:
            engine = session_proxy.create_engine(server.url, token=server.token)
            pinged = turns_per_transaction(engine, relay, _select)
            engine.dispose()
        finally:
            server.stop()
    assert pinged == [4, 4, 4]  # the ping, BEGIN, the query, the commit


def test_a_dead_idle_connection_is_replaced(pg_url: str) -> None:
    """A pooled connection killed while idle past the threshold fails its ping
    on checkout, and the pool connects a new one: the client sees nothing."""
    server = ServerProcess(pg_url, "--max-transactions", "1", "--pre-ping-idle-seconds", "0.2")
    direct = sa.create_engine(pg_url)
    try:
        engine = session_proxy.create_engine(server.url, token=server.token)
        with engine.begin() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with direct.begin() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        time.sleep(0.5)  # idle past the threshold
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
        engine.dispose()
    finally:
        direct.dispose()
        server.stop()
