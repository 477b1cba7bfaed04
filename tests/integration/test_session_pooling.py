"""Session pooling: one server database connection per client connection.

A server started with ``--session-pooling`` lets a client that asks
(``?pooling=session``) hold one database connection for the life of each
client DBAPI connection, as PgBouncer's ``pool_mode = session``.  These
tests run real server processes on SQLite, PostgreSQL and MariaDB and
check what persists (temporary tables, ``SET``/``PRAGMA``), what does not
leak (another client connection, another token), what the server counts
(``/v1/metrics``: open sessions, session resets), the limits (cap, idle
timeout, a dropped connection) with the error each gives, idempotent
commits inside a session, and that the default mode is unchanged.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa

import session_proxy
from session_proxy.errors import RequestRejected, ServerBusy, SessionClosed
from session_proxy.wire import protocol
from session_proxy_server.testing import issue
from tests.conftest import REPO, ServerProcess, wait_for

OPEN_SESSIONS = "session_proxy_open_sessions"
RESETS = "session_proxy_session_resets_total"
CLOSED_BY_SERVER = "session_proxy_sessions_closed_by_server_total"

#: Per backend: a session setting, the query reading it, its value once set.
SETTINGS = {
    "sqlite": ("PRAGMA recursive_triggers = ON", "PRAGMA recursive_triggers", 1),
    "postgresql": (
        "SET application_name = 'sp-session-pooling'",
        "SELECT current_setting('application_name')",
        "sp-session-pooling",
    ),
    "mysql": ("SET @sp_marker = 42", "SELECT @sp_marker", 42),
}


@pytest.fixture(scope="module")
def pooling_server(db_url: str) -> Iterator[ServerProcess]:
    server = ServerProcess(db_url, "--session-pooling", "--max-sessions", "3",
                           "--max-sessions-per-subject", "3")
    yield server
    server.stop()


def session_engine(server: ServerProcess, token: str | None = None, **options: str) -> sa.Engine:
    """A ``sessionproxy://`` engine asking for session pooling."""
    query = "&".join(f"{key}={value}" for key, value in {"pooling": "session", **options}.items())
    return sa.create_engine(
        f"sessionproxy://:{token or server.token}@127.0.0.1:{server.port}/?{query}"
    )


def count_temp_rows(conn: sa.Connection) -> int:
    return conn.exec_driver_sql("SELECT count(*) FROM sp_pool_tmp").scalar_one()


def test_temp_table_lasts_for_the_client_connection_only(pooling_server, backend) -> None:
    engine = session_engine(pooling_server)
    try:
        with engine.connect() as first, engine.connect() as second:
            first.exec_driver_sql("CREATE TEMPORARY TABLE sp_pool_tmp (id INTEGER)")
            first.commit()
            first.exec_driver_sql("INSERT INTO sp_pool_tmp VALUES (1)")
            first.commit()
            first.exec_driver_sql("INSERT INTO sp_pool_tmp VALUES (2)")
            first.rollback()
            assert count_temp_rows(first) == 1
            first.commit()
            assert pooling_server.metric(OPEN_SESSIONS) == 2
            # The other client connection holds another database connection.
            with pytest.raises(sa.exc.DBAPIError):
                count_temp_rows(second)
            second.rollback()
    finally:
        engine.dispose()


def test_a_session_setting_persists_across_transactions(pooling_server, backend) -> None:
    setting, query, value = SETTINGS[backend]
    engine = session_engine(pooling_server)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(setting)
            conn.commit()
            assert conn.exec_driver_sql(query).scalar() == value
            conn.commit()
            assert conn.exec_driver_sql(query).scalar() == value
    finally:
        engine.dispose()


def test_default_mode_is_unchanged_on_a_server_allowing_sessions(pooling_server, backend) -> None:
    setting, query, value = SETTINGS[backend]
    engine = session_proxy.create_engine(pooling_server.url, token=pooling_server.token)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE sp_pool_tmp (id INTEGER)")
            conn.exec_driver_sql(setting)
            conn.commit()
            assert conn.exec_driver_sql(query).scalar() != value
            conn.commit()
            with pytest.raises(sa.exc.DBAPIError):
                count_temp_rows(conn)
            conn.rollback()
            assert conn.connection.dbapi_connection.session is None
        assert pooling_server.metric(OPEN_SESSIONS) == 0
    finally:
        engine.dispose()


def test_closing_the_client_connection_resets_and_releases_the_server_one(
    pooling_server, backend
) -> None:
    engine = session_engine(pooling_server)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE sp_pool_tmp (id INTEGER)")
            conn.commit()
            assert pooling_server.metric(OPEN_SESSIONS) == 1
            resets = pooling_server.settled_metric(RESETS)
            transactions = session_proxy.stats(engine).snapshot().round_trips
            conn.exec_driver_sql("INSERT INTO sp_pool_tmp VALUES (1)")
            conn.commit()
            assert session_proxy.stats(engine).snapshot().round_trips - transactions == 2
            # No reset between the session's own transactions.
            assert pooling_server.settled_metric(RESETS) == resets
        # Back in the client's pool: the server connection is still held.
        assert pooling_server.metric(OPEN_SESSIONS) == 1
    finally:
        engine.dispose()
    assert pooling_server.metric(OPEN_SESSIONS) == 0
    # It went back to the shared pool through the session reset, once.
    assert pooling_server.settled_metric(RESETS) == resets + 1
    # A transaction-pooled client of the same server sees nothing of it.
    other = session_proxy.create_engine(pooling_server.url, token=pooling_server.token)
    try:
        with other.connect() as conn, pytest.raises(sa.exc.DBAPIError):
            count_temp_rows(conn)
    finally:
        other.dispose()


# -- raw HTTP: who may use a session ------------------------------------------------


def _headers(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers[protocol.IDEMPOTENCY_KEY_HEADER] = key
    return headers


def open_session(server: ServerProcess, token: str, key: str | None = None) -> requests.Response:
    return requests.post(server.url + protocol.SESSIONS_PATH, json=protocol.session_request(),
                         headers=_headers(token, key), timeout=30)


def pipeline(server: ServerProcess, token: str, session_id: str, steps: list[dict],
             key: str | None = None, txn: str | None = None) -> requests.Response:
    return requests.post(server.url + protocol.PIPELINE_PATH,
                         json=protocol.pipeline_request(txn, steps, session_id),
                         headers=_headers(token, key), timeout=30)


def close_session(server: ServerProcess, token: str, session_id: str) -> requests.Response:
    return requests.delete(f"{server.url}{protocol.SESSIONS_PATH}/{session_id}",
                           headers=_headers(token), timeout=30)


SELECT_ONE = [{"op": "begin"}, {"op": "execute", "sql": "SELECT 1", "params": None},
              {"op": "rollback"}]


def test_another_token_cannot_use_or_close_a_session(pooling_server, backend) -> None:
    if backend != "sqlite":
        pytest.skip("ownership is backend-independent; checked once")
    owner, intruder = issue("worker", "owner"), issue("worker", "intruder")
    same_subject_other_role = issue("reader", "owner")
    opened = open_session(pooling_server, owner)
    assert opened.status_code == 201, opened.text
    session_id = opened.json()["session_id"]
    never = session_id[:-4] + "AAAA"
    try:
        answers = {}
        for name, token, sid in [("intruder", intruder, session_id),
                                 ("other role", same_subject_other_role, session_id),
                                 ("never opened", owner, never)]:
            used = pipeline(pooling_server, token, sid, SELECT_ONE)
            closed = close_session(pooling_server, token, sid)
            assert used.status_code == closed.status_code == 404, (name, used.text)
            answers[name] = (used.json()["error"]["code"], closed.json()["error"]["code"])
        # The intruder learns exactly what an id that never existed tells.
        assert set(answers.values()) == {(protocol.UNKNOWN_SESSION, protocol.UNKNOWN_SESSION)}
        assert pipeline(pooling_server, owner, session_id, SELECT_ONE).status_code == 200
    finally:
        assert close_session(pooling_server, owner, session_id).status_code == 200
    assert pipeline(pooling_server, owner, session_id, SELECT_ONE).status_code == 404


def test_a_retried_open_gets_the_same_session(pooling_server, backend) -> None:
    if backend != "sqlite":
        pytest.skip("idempotent opening is backend-independent; checked once")
    key = secrets.token_urlsafe(18)
    first = open_session(pooling_server, pooling_server.token, key)
    again = open_session(pooling_server, pooling_server.token, key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["session_id"] == again.json()["session_id"]
    assert pooling_server.metric(OPEN_SESSIONS) == 1
    close_session(pooling_server, pooling_server.token, first.json()["session_id"])
    assert pooling_server.metric(OPEN_SESSIONS) == 0


def test_a_commit_in_a_session_runs_once_when_retried(pooling_server, backend, db_url) -> None:
    direct = sa.create_engine(db_url)
    with direct.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sp_pool_once")
        conn.exec_driver_sql("CREATE TABLE sp_pool_once (id INTEGER)")
    token = pooling_server.token
    session_id = open_session(pooling_server, token).json()["session_id"]
    try:
        key = secrets.token_urlsafe(18)
        steps = [{"op": "begin"},
                 {"op": "execute", "sql": "INSERT INTO sp_pool_once VALUES (1)", "params": None},
                 {"op": "commit"}]
        first = pipeline(pooling_server, token, session_id, steps, key)
        retried = pipeline(pooling_server, token, session_id, steps, key)
        assert first.status_code == retried.status_code == 200, retried.text
        assert retried.headers.get(protocol.REPLAYED_HEADER) == "true"
        with direct.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM sp_pool_once").scalar() == 1
    finally:
        close_session(pooling_server, token, session_id)
        with direct.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS sp_pool_once")
        direct.dispose()


# -- limits and failures -----------------------------------------------------------


def test_the_session_cap_gives_a_clear_error(pooling_server, backend) -> None:
    if backend != "sqlite":
        pytest.skip("the cap is backend-independent; checked once")
    engine = session_engine(pooling_server, retries="1")
    held = [engine.connect() for _ in range(3)]
    try:
        with pytest.raises(sa.exc.OperationalError) as refused:
            engine.connect()
        assert isinstance(refused.value.orig, ServerBusy)
        assert "3 sessions" in str(refused.value.orig)
        assert "--max-sessions" in str(refused.value.orig)
    finally:
        for conn in held:
            conn.close()
        engine.dispose()
    assert pooling_server.metric(OPEN_SESSIONS) == 0


def test_one_subject_cannot_hold_every_session(db_url, backend) -> None:
    """Red-team finding: one token took every --max-sessions slot and others got 503.

    By default a subject may hold half of --max-sessions; the next one is 429
    ``subject_limit`` while another subject still gets a session.
    """
    if backend != "sqlite":
        pytest.skip("the cap is backend-independent; checked once")
    with ServerProcess(db_url, "--session-pooling", "--max-sessions", "4") as server:
        greedy, other = issue("worker", "greedy"), issue("worker", "other")
        opened = [open_session(server, greedy) for _ in range(3)]
        assert [r.status_code for r in opened] == [201, 201, 429]
        assert opened[2].json()["error"]["code"] == protocol.SUBJECT_LIMIT
        assert open_session(server, other).status_code == 201
        assert server.metric(OPEN_SESSIONS) == 3


@pytest.mark.parametrize(("steps", "kept"), [([{"op": "commit"}], False), (SELECT_ONE, True)],
                         ids=["commits only", "statements"])
def test_only_statements_keep_a_session_open(db_url, backend, steps, kept) -> None:
    """Red-team finding: commit-only requests restarted the idle clock forever."""
    if backend != "sqlite":
        pytest.skip("the idle clock is backend-independent; checked once")
    with ServerProcess(db_url, "--session-pooling", "--session-idle-seconds", "0.5") as server:
        token = issue("worker", "client")
        session_id = open_session(server, token).json()["session_id"]
        statuses = []
        for _ in range(40):  # 2 s of requests, 4x the idle limit
            statuses.append(pipeline(server, token, session_id, steps).status_code)
            if statuses[-1] != 200:
                break
            time.sleep(0.05)
        assert statuses[-1] == (200 if kept else 410), statuses
        assert server.metric(CLOSED_BY_SERVER) == (0 if kept else 1)


def test_a_server_without_session_pooling_refuses_at_connect(server, backend) -> None:
    if backend != "sqlite":
        pytest.skip("the refusal is backend-independent; checked once")
    engine = session_engine(server)
    try:
        with pytest.raises(sa.exc.DBAPIError) as refused:
            engine.connect()
        assert isinstance(refused.value.orig, RequestRejected)
        assert refused.value.orig.status == 400
        assert "--session-pooling" in str(refused.value.orig)
    finally:
        engine.dispose()


def test_an_idle_session_is_closed_and_its_client_told_why(db_url, backend) -> None:
    with ServerProcess(db_url, "--session-pooling", "--session-idle-seconds", "0.5") as server:
        engine = session_engine(server)
        try:
            conn = engine.connect()
            conn.exec_driver_sql("CREATE TEMPORARY TABLE sp_pool_tmp (id INTEGER)")
            conn.commit()
            wait_for(lambda: server.metric(CLOSED_BY_SERVER) == 1)
            assert server.metric(OPEN_SESSIONS) == 0
            with pytest.raises(sa.exc.OperationalError) as closed:
                count_temp_rows(conn)
            assert isinstance(closed.value.orig, SessionClosed)
            assert "idle for more than 0.5 s" in str(closed.value.orig)
            # A disconnect to SQLAlchemy: the pool replaces the connection.
            assert closed.value.connection_invalidated
            conn.close()
            with engine.connect() as fresh:
                assert fresh.exec_driver_sql("SELECT 1").scalar() == 1
        finally:
            engine.dispose()


def test_a_session_whose_connection_was_killed_says_so(pooling_server, backend, db_url) -> None:
    if backend != "postgresql":
        pytest.skip("pg_terminate_backend ends one server connection from outside")
    engine = session_engine(pooling_server)
    direct = sa.create_engine(db_url)
    try:
        conn = engine.connect()
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.commit()
        with direct.connect() as killer:
            killer.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        with pytest.raises(sa.exc.OperationalError):
            conn.exec_driver_sql("SELECT 1")
        conn.rollback()  # what the application does after an error
        with pytest.raises(sa.exc.OperationalError) as closed:
            conn.exec_driver_sql("SELECT 1")
        assert isinstance(closed.value.orig, SessionClosed)
        assert "database connection was dropped" in str(closed.value.orig)
        conn.close()
        assert pooling_server.metric(OPEN_SESSIONS) == 0
    finally:
        engine.dispose()
        direct.dispose()


def test_sessions_follow_their_worker(db_url, backend) -> None:
    if backend != "postgresql":
        pytest.skip("several workers: checked on PostgreSQL")
    with ServerProcess(db_url, "--workers", "2", "--worker-port-base", "0",
                       "--session-pooling", "--max-sessions", "20",
                       "--max-sessions-per-subject", "20") as server:
        engines = [session_engine(server) for _ in range(12)]  # a TCP connection each
        try:
            connections = [engine.connect() for engine in engines]
            for number, conn in enumerate(connections):
                conn.exec_driver_sql("CREATE TEMPORARY TABLE sp_pool_tmp (id INTEGER)")
                conn.exec_driver_sql(f"INSERT INTO sp_pool_tmp VALUES ({number})")
                conn.commit()
            for number, conn in enumerate(connections):
                assert conn.exec_driver_sql("SELECT id FROM sp_pool_tmp").scalar() == number
                conn.commit()
            homes = {conn.connection.dbapi_connection.session.base_url for conn in connections}
            # Sessions opened on both workers, and every follow-up found its own.
            assert len(homes) == 2, homes
            for conn in connections:
                conn.close()
        finally:
            for engine in engines:
                engine.dispose()


def test_pooling_option_is_checked_by_the_client() -> None:
    with pytest.raises(ValueError, match="pooling must be one of transaction, session"):
        session_proxy.ClientConfig("http://127.0.0.1:1", pooling="statement")


def test_invalidation_and_interpreter_exit_release_sessions(pooling_server, backend) -> None:
    if backend != "sqlite":
        pytest.skip("the client's release paths are backend-independent; checked once")
    engine = session_engine(pooling_server)
    try:
        conn = engine.connect()
        conn.exec_driver_sql("SELECT 1")
        assert pooling_server.metric(OPEN_SESSIONS) == 1
        conn.invalidate()  # the pool closes the DBAPI connection: the session goes
        assert pooling_server.metric(OPEN_SESSIONS) == 0
        conn.close()
    finally:
        engine.dispose()
    url = f"sessionproxy://:{pooling_server.token}@127.0.0.1:{pooling_server.port}/?pooling=session"
    script = (
        "import sqlalchemy as sa\n"
        f"engine = sa.create_engine({url!r})\n"
        "held = [engine.connect() for _ in range(2)]\n"
        "for conn in held:\n"
        "    conn.exec_driver_sql('SELECT 1')\n"
        "print('holding', flush=True)\n"
    )
    # The process exits holding two connections it never closed.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0 and "holding" in done.stdout, done.stderr
    assert pooling_server.metric(OPEN_SESSIONS) == 0
