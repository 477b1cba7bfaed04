"""Server-held transactions (leases) seen through SQLAlchemy proxy engines.

Each test starts its own ``session-proxy-server`` with short leases or a
small cap on open transactions, drives it through
:func:`session_proxy.create_engine`, and checks the database itself through
a direct engine.  Waiting is always polling with a deadline (``wait_for``),
never an assertion on elapsed time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

import session_proxy
from session_proxy import errors
from session_proxy.dialects import register
from session_proxy.retry import NO_RETRIES
from session_proxy.wire import protocol
from tests.conftest import ServerProcess, free_port, scratch_table, wait_for

TABLE = "sp_lease"
INITIAL_ROWS = [(1, "one"), (2, "two")]
TIMEOUT = 30


def metric(server: ServerProcess, name: str) -> int:
    """The value of an unlabelled counter or gauge on ``/v1/metrics``."""
    response = requests.get(
        server.url + protocol.METRICS_PATH, headers=server.headers, timeout=TIMEOUT
    )
    response.raise_for_status()
    match = re.search(rf"^{re.escape(name)} (\d+)$", response.text, re.MULTILINE)
    assert match, response.text
    return int(match.group(1))


def expiries(server: ServerProcess) -> int:
    return metric(server, "session_proxy_lease_expiries_total")


def open_transactions(server: ServerProcess) -> int:
    return metric(server, "session_proxy_open_transactions")


def table_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        result = conn.execute(sa.text(f"SELECT id, v FROM {TABLE} ORDER BY id"))
        return [tuple(row) for row in result]


def can_lock_nowait(engine: sa.Engine, id_: int) -> bool:
    """Whether a new transaction can lock row ``id_`` right now without waiting."""
    with engine.connect() as conn:
        try:
            conn.execute(
                sa.text(f"SELECT v FROM {TABLE} WHERE id = :id FOR UPDATE NOWAIT"), {"id": id_}
            ).all()
        except sa.exc.OperationalError:
            conn.rollback()
            return False
        conn.rollback()
        return True


@pytest.fixture
def direct(db_url: str) -> Iterator[sa.Engine]:
    """A direct engine on the database, with the test table holding two rows."""
    with scratch_table(db_url, TABLE, "id INTEGER PRIMARY KEY, v VARCHAR(20)",
                       [{"id": id_, "v": v} for id_, v in INITIAL_ROWS], drop=False) as engine:
        yield engine


@pytest.fixture
def start_server(db_url: str) -> Iterator:
    """Start servers for ``db_url`` with extra CLI flags; all stopped afterwards."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        proc = ServerProcess(db_url, *flags)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def make_proxy_engine() -> Iterator:
    """Build proxy engines (short client timeout: a hang fails, never blocks)."""
    made: list[sa.Engine] = []

    def make(server: ServerProcess, **kwargs: object) -> sa.Engine:
        engine = session_proxy.create_engine(
            server.url, token=server.token, timeout=20, **kwargs
        )
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


# -- idle expiry -------------------------------------------------------------------


def test_idle_transaction_expires(start_server, make_proxy_engine, direct: sa.Engine) -> None:
    server = start_server("--lease-seconds", "1")
    engine = make_proxy_engine(server)
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar() == 2
        conn.rollback()
        wait_for(lambda: open_transactions(server) == 0)
        before = expiries(server)

        conn.execute(sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)"), {"id": 3, "v": "x"})
        assert open_transactions(server) == 1
        wait_for(lambda: expiries(server) >= before + 1 and open_transactions(server) == 0)

        with pytest.raises(sa.exc.OperationalError) as info:
            conn.execute(sa.text(f"SELECT v FROM {TABLE} WHERE id = :id"), {"id": 3}).all()
        assert isinstance(info.value.orig, errors.TransactionExpired), repr(info.value.orig)
        assert "expired" in str(info.value.orig)
        assert "expired" in str(info.value)
        assert not conn.invalidated
        # The server rolled the insert back.
        assert table_rows(direct) == INITIAL_ROWS

        conn.rollback()
        # The same connection works again, in a new transaction.
        assert conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar() == 2
        conn.execute(sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)"), {"id": 4, "v": "y"})
        conn.commit()
    assert table_rows(direct) == [*INITIAL_ROWS, (4, "y")]


def test_expiry_releases_row_locks(
    backend: str, start_server, make_proxy_engine, direct: sa.Engine
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no row locks (no SELECT ... FOR UPDATE)")
    # Long enough that the lock is certainly still held when B first tries.
    server = start_server("--lease-seconds", "2")
    engine_a = make_proxy_engine(server)
    before = expiries(server)
    with engine_a.connect() as a:
        row = a.execute(sa.text(f"SELECT v FROM {TABLE} WHERE id = :id FOR UPDATE"), {"id": 1})
        assert row.scalar() == "one"
        a.execute(sa.text(f"UPDATE {TABLE} SET v = :v WHERE id = :id"), {"id": 1, "v": "A"})
        # A holds the lock: B cannot take it.
        assert not can_lock_nowait(direct, 1)
        # A idles; the server rolls A back and B gets the lock.
        wait_for(lambda: can_lock_nowait(direct, 1))
        assert expiries(server) >= before + 1
        assert table_rows(direct) == INITIAL_ROWS

        with pytest.raises(sa.exc.OperationalError) as info:
            a.execute(sa.text(f"SELECT v FROM {TABLE} WHERE id = :id"), {"id": 1}).all()
        assert isinstance(info.value.orig, errors.TransactionExpired), repr(info.value.orig)
        assert "expired" in str(info.value)
        a.rollback()


def test_expiry_releases_row_locks_to_another_proxy_client(
    backend: str, start_server, make_proxy_engine, direct: sa.Engine
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no row locks (no SELECT ... FOR UPDATE)")
    server = start_server("--lease-seconds", "1")
    engine_a = make_proxy_engine(server)
    engine_b = make_proxy_engine(server)
    with engine_a.connect() as a:
        a.execute(sa.text(f"SELECT v FROM {TABLE} WHERE id = 2 FOR UPDATE")).all()
        wait_for(lambda: can_lock_nowait(engine_b, 2))
        with engine_b.begin() as b:
            b.execute(sa.text(f"UPDATE {TABLE} SET v = 'B' WHERE id = 2"))
        with pytest.raises(sa.exc.OperationalError) as info:
            a.execute(sa.text(f"UPDATE {TABLE} SET v = 'A' WHERE id = 2"))
        assert isinstance(info.value.orig, errors.TransactionExpired), repr(info.value.orig)
        a.rollback()
    assert table_rows(direct) == [(1, "one"), (2, "B")]


# -- the cap on open transactions -------------------------------------------------


def test_cap_on_open_transactions(start_server, make_proxy_engine, direct: sa.Engine) -> None:
    server = start_server("--max-transactions", "2")
    # Without retries, to see the refusal itself (test_reliability retries it).
    engine = make_proxy_engine(server, retry=NO_RETRIES)
    first = engine.connect()
    second = engine.connect()
    third = engine.connect()
    try:
        first.execute(sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)"), {"id": 3, "v": "c"})
        # A read is enough to hold a lease (and SQLite allows only one writer).
        assert second.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar() == 2
        assert open_transactions(server) == 2

        response = requests.post(
            server.url + protocol.PIPELINE_PATH,
            json={
                "protocol": protocol.PROTOCOL_VERSION,
                "txn": None,
                "steps": [{"op": "execute", "sql": "SELECT 1", "params": None}],
            },
            headers=server.headers,
            timeout=TIMEOUT,
        )
        assert response.status_code == 503, response.text
        assert response.headers.get("Retry-After") == "1"
        error = response.json()["error"]
        assert error["code"] == "too_many_transactions"
        assert "2 open transactions" in error["message"]

        with pytest.raises(sa.exc.OperationalError) as info:
            third.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar()
        assert isinstance(info.value.orig, errors.ServerBusy), repr(info.value.orig)
        assert info.value.orig.retry_after == 1.0
        assert not third.invalidated
        third.rollback()
        assert open_transactions(server) == 2

        first.commit()
        wait_for(lambda: open_transactions(server) == 1)
        assert third.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar() == 3
        third.commit()
    finally:
        for conn in (first, second, third):
            conn.close()
    assert table_rows(direct) == [*INITIAL_ROWS, (3, "c")]
    wait_for(lambda: open_transactions(server) == 0)


def test_failed_first_statement_does_not_leak_a_lease(
    start_server, make_proxy_engine, direct: sa.Engine
) -> None:
    """A database error in the request that opens a lease leaves it open on the
    server; the client's rollback must end it, or the cap fills up."""
    server = start_server("--max-transactions", "1")
    engine = make_proxy_engine(server)
    for attempt in range(3):
        with engine.connect() as conn:
            with pytest.raises(sa.exc.IntegrityError):
                conn.execute(
                    sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)"),
                    {"id": 1, "v": f"dup {attempt}"},
                )
            conn.rollback()
            assert open_transactions(server) == 0
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)"), {"id": 3, "v": "c"})
    assert table_rows(direct) == [*INITIAL_ROWS, (3, "c")]


# -- servers that cannot serve this client --------------------------------------------


def test_server_not_running() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(errors.ServerUnreachable) as info:
        session_proxy.create_engine(url, timeout=5)
    assert url in str(info.value)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(f"sqlite:///{tmp_path / 'mismatch.db'}")
    yield proc
    proc.stop()


@pytest.mark.parametrize("client_backend", ["mysql", "postgresql"])
def test_backend_mismatch(sqlite_server: ServerProcess, client_backend: str) -> None:
    register()
    engine = sa.create_engine(
        f"{client_backend}+sessionproxy://:{sqlite_server.token}@127.0.0.1:{sqlite_server.port}/"
    )
    try:
        with pytest.raises(sa.exc.DBAPIError) as info:
            with engine.connect():
                pass
        orig = info.value.orig
        assert isinstance(orig, errors.ProtocolMismatch), repr(orig)
        assert repr(client_backend) in str(orig) and "'sqlite'" in str(orig), str(orig)
    finally:
        engine.dispose()
