"""Shared fixtures: real databases, real ``session-proxy-server`` processes.

``backend`` is one of sqlite / postgresql / mysql, ``mode`` one of direct /
proxy.  In proxy mode the engine talks HTTP to a ``session-proxy-server``
subprocess in front of the same database the direct engine uses.
PostgreSQL and MySQL tests skip when their server is down, except under
``CI=true``, where a missing server fails the run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import session_proxy
from session_proxy_server.testing import ServerProcess, free_port

__all__ = ["REPO", "ServerProcess", "free_port", "wait_for"]

#: The source checkout the tests run from (subprocesses that need it use it as cwd).
REPO = Path(__file__).resolve().parents[1]

BACKEND_URLS = {
    "postgresql": os.environ.get(
        "SESSION_PROXY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get(
        "SESSION_PROXY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}
BACKENDS = ["sqlite", "postgresql", "mysql"]
MODES = ["direct", "proxy"]
WORKLOAD_OPERATIONS = "session_proxy_bench.workload.operations"
ON_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(url: str) -> str | None:
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host, parsed.port), timeout=2):
            return None
    except OSError as exc:
        return f"{parsed.get_backend_name()} at {parsed.host}:{parsed.port}: {exc}"


@pytest.fixture(scope="session")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite") / "test.db"


def backend_url(backend: str, sqlite_path: Path) -> str:
    """The direct SQLAlchemy URL of ``backend`` for this test run."""
    if backend == "sqlite":
        return f"sqlite:///{sqlite_path}"
    url = BACKEND_URLS[backend]
    problem = _reachable(url)
    if problem:
        if ON_CI:
            pytest.fail(f"database server not reachable under CI=true: {problem}")
        pytest.skip(f"database server not reachable: {problem}")
    return url


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def db_url(backend: str, sqlite_path: Path) -> str:
    return backend_url(backend, sqlite_path)


_servers: dict[str, ServerProcess] = {}


@pytest.fixture(scope="session")
def server(db_url: str) -> Iterator[ServerProcess]:
    """The shared server process for this backend (started once per run)."""
    if db_url not in _servers:
        _servers[db_url] = ServerProcess(db_url, "--operations", WORKLOAD_OPERATIONS)
    yield _servers[db_url]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for proc in _servers.values():
        proc.stop()


@contextlib.contextmanager
def scratch_table(
    db_url: str, table: str, columns: str, rows: Sequence[dict] = (), *, drop: bool = True
) -> Iterator[sa.Engine]:
    """A direct engine on ``db_url`` with ``table`` made afresh and holding ``rows``.

    ``columns`` is the column list of the ``CREATE TABLE`` (``"id INTEGER
    PRIMARY KEY, v VARCHAR(20)"``); each row is a mapping of column to value.
    The table is dropped afterwards unless ``drop`` is False (a test that may
    leave a server transaction holding its locks).
    """
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(sa.text(f"CREATE TABLE {table} ({columns})"))
        if rows:
            names = list(rows[0])
            conn.execute(
                sa.text(f"INSERT INTO {table} ({', '.join(names)}) "
                        f"VALUES ({', '.join(':' + n for n in names)})"),
                list(rows),
            )
    try:
        yield engine
        if drop:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        engine.dispose()


@pytest.fixture
def direct_engine(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def proxy_engine(server: ServerProcess) -> Iterator[sa.Engine]:
    engine = session_proxy.create_engine(server.url, token=server.token)
    yield engine
    engine.dispose()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def engine(mode: str, request: pytest.FixtureRequest) -> sa.Engine:
    """The engine under test: direct or through the proxy."""
    return request.getfixturevalue(f"{mode}_engine")


@pytest.fixture
def make_engine(mode: str, db_url: str, request: pytest.FixtureRequest) -> Iterator:
    """Build more engines of the current mode (e.g. a second client)."""
    made: list[sa.Engine] = []

    def make() -> sa.Engine:
        if mode == "direct":
            engine = sa.create_engine(db_url)
        else:
            server = request.getfixturevalue("server")
            engine = session_proxy.create_engine(server.url, token=server.token)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


def wait_for(condition, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll ``condition`` until true; fail the test if it never becomes true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition {condition} not reached within {timeout} s")
