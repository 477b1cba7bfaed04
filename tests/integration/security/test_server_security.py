"""The server's security wiring, end to end: real processes, HTTP and databases.

Covers the user-facing paths of TLS, policy recording and enforcement
(statements, table rules, logical operations), trusted clients, the limits
per subject / per transaction / per statement, authentication on health and
metrics, and the CLI's refusals.  Hostile inputs (forged tokens, injection,
other callers' transactions, ...) are another suite's job.

Most cases run against one SQLite file of this module; only the statement
timeout, which every backend enforces differently, runs on every backend.
Servers are module-scoped and each serves one concern.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import session_proxy
from session_proxy import ProxySession, background, errors
from session_proxy.dialects import register
from session_proxy.logical import RemoteClient
from session_proxy_server.auth import TokenVerifier, load_public_key
from session_proxy_server.sql.fingerprint import fingerprint
from session_proxy_server.testing import issue, signing_key
from tests import operations_for_tests as ops
from tests.conftest import REPO, ServerProcess, wait_for

OPS_MODULE = "tests.operations_for_tests"
ECHO = OPS_MODULE + ".echo"
COUNT_NOTES = OPS_MODULE + ".count_notes"
ADD_NOTE = OPS_MODULE + ".add_note"

INSERT_ITEM = "INSERT INTO sp_sec_item (id, name) VALUES (:id, :name)"
SELECT_ITEM = "SELECT name FROM sp_sec_item WHERE id = :id"
#: Never run by the recorded workload, so the recorded policy refuses it.
RENAME_ITEM = "UPDATE sp_sec_item SET name = :name WHERE id = :id"


class Base(DeclarativeBase):
    """This module's own tables."""


class Item(Base):
    __tablename__ = "sp_sec_item"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(50))


sa.Table("t_read", Base.metadata, sa.Column("x", sa.Integer))
sa.Table("t_write", Base.metadata, sa.Column("x", sa.Integer))
sa.Table("sp_sec_limit", Base.metadata, sa.Column("x", sa.Integer))


class Opaque:
    """A value the JSON codec cannot represent: it travels only as a dill pickle.

    Pickled by reference, so the server imports this module to rebuild it,
    as it would a trusted client's shared code.
    """

    def __init__(self, label: str, numbers: list[int]) -> None:
        self.label = label
        self.numbers = numbers

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Opaque
            and (other.label, other.numbers) == (self.label, self.numbers)
        )

    __hash__ = None  # type: ignore[assignment]


# -- helpers ------------------------------------------------------------------------


def write_policy(path: Path, roles: dict) -> Path:
    path.write_text(json.dumps({"version": 1, "roles": roles}))
    return path


def metric(proc: ServerProcess, name: str) -> float:
    """One unlabelled sample of the server's /v1/metrics."""
    text = requests.get(
        proc.url + "/v1/metrics", headers=proc.headers, verify=proc.verify, timeout=10
    ).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from metrics:\n{text}"
    return float(match.group(1))


def transaction_id(conn: sa.Connection) -> str | None:
    """The server-side lease the proxy connection holds, if any."""
    return conn.connection.dbapi_connection.transaction_id


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``session-proxy-server ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "session_proxy_server.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file with this module's tables and the test operations' table."""
    url = f"sqlite:///{tmp_path_factory.mktemp('security') / 'security.db'}"
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    ops.Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t_read (x) VALUES (7)"))
    engine.dispose()
    return url


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    """A direct engine on the module's SQLite file, for checking what was stored."""
    engine = sa.create_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def proxy_engines() -> Iterator:
    """``make(server, token)``: proxy engines disposed after the test."""
    made: list[sa.Engine] = []

    def make(proc: ServerProcess, token: str | None) -> sa.Engine:
        engine = session_proxy.create_engine(proc.url, token=token, verify=proc.verify)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Not created yet: the server makes it and the certificate on first start."""
    return tmp_path_factory.mktemp("tls-parent") / "tls"


@pytest.fixture(scope="module")
def tls_server(sqlite_url: str, tls_dir: Path) -> Iterator[ServerProcess]:
    assert not tls_dir.exists()
    proc = ServerProcess(sqlite_url, tls_dir=tls_dir)
    yield proc
    proc.stop()


def workload(engine: sa.Engine, first_id: int) -> None:
    """What the recorded worker does: Core text SQL, then ORM through ProxySession."""
    with engine.begin() as conn:
        conn.execute(sa.text(INSERT_ITEM), {"id": first_id, "name": "core"})
        assert conn.execute(sa.text(SELECT_ITEM), {"id": first_id}).scalar_one() == "core"
    with sessionmaker(class_=ProxySession, bind=engine)() as session:
        session.add(Item(id=first_id + 1, name="orm"))
        session.commit()
        assert session.get(Item, first_id + 1).name == "orm"


@pytest.fixture(scope="module")
def recorded(
    sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """Run the workload as role worker under --policy-record.

    Returns the written policy file and every statement the client sent.
    """
    path = tmp_path_factory.mktemp("record") / "policy.json"
    sent: list[str] = []
    with ServerProcess(sqlite_url, "--policy-record", str(path)) as proc:
        engine = session_proxy.create_engine(proc.url, token=issue("worker", "w1"))
        sa.event.listen(
            engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: sent.append(sql)
        )
        try:
            workload(engine, 100)
        finally:
            engine.dispose()
    return path, sent


@pytest.fixture(scope="module")
def enforcing_server(
    sqlite_url: str, recorded: tuple[Path, list[str]]
) -> Iterator[ServerProcess]:
    """The recorded policy plus an admin role allowed everything, enforced."""
    data = json.loads(recorded[0].read_text())
    data["roles"]["admin"] = {"allow_all": True}
    path = recorded[0].with_name("enforced.json")
    path.write_text(json.dumps(data))
    proc = ServerProcess(sqlite_url, "--policy", str(path))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def rules_server(
    sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Role worker: table rules and two of the test operations."""
    policy = write_policy(
        tmp_path_factory.mktemp("rules") / "policy.json",
        {
            "worker": {
                # No statements: the dialect's first-connect PRAGMA is one of
                # the policy's built-in start-up statements.
                "tables": {"t_read": "read", "t_write": "write"},
                "operations": [ECHO, COUNT_NOTES],
            }
        },
    )
    proc = ServerProcess(sqlite_url, "--operations", OPS_MODULE, "--policy", str(policy))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def trusted_server(sqlite_url: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(sqlite_url, "--operations", OPS_MODULE, "--trusted-clients")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def limits_server(db_url: str) -> Iterator[ServerProcess]:
    """One per backend: one open transaction per subject, 1 s per statement."""
    proc = ServerProcess(
        db_url, "--max-transactions-per-subject", "1", "--statement-timeout", "1"
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def short_transactions_server(sqlite_url: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(sqlite_url, "--max-transaction-seconds", "1", "--lease-seconds", "30")
    yield proc
    proc.stop()


# -- 1. TLS ---------------------------------------------------------------------------


def test_tls_engine_runs_queries_over_https(
    tls_server: ServerProcess, tls_dir: Path, proxy_engines
) -> None:
    assert tls_server.url.startswith("https://")
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    assert b"BEGIN CERTIFICATE" in cert.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    engine = proxy_engines(tls_server, tls_server.token)
    assert engine.dialect.transport.base_url == tls_server.url
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT x FROM t_read")).scalar_one() == 7

    # Plain HTTP to the HTTPS port gets no answer a client could mistake for one.
    with pytest.raises(errors.ServerUnreachable):
        session_proxy.create_engine(
            tls_server.url.replace("https://", "http://"), token=tls_server.token
        )


def test_tls_default_verification_refuses_the_self_signed_certificate(
    tls_server: ServerProcess,
) -> None:
    # create_engine's handshake probe fails before any engine exists.
    with pytest.raises(errors.ServerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        session_proxy.create_engine(tls_server.url, token=tls_server.token)

    # The URL form with tls=true but no CA fails on first connect, wrapped.
    register()
    engine = sa.create_engine(
        f"sqlite+sessionproxy://:{tls_server.token}@127.0.0.1:{tls_server.port}/?tls=true"
    )
    try:
        with pytest.raises(sa.exc.OperationalError) as caught:
            engine.connect()
    finally:
        engine.dispose()
    assert isinstance(caught.value.orig, errors.ServerUnreachable)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value.orig)


def test_tls_url_form_with_ca(tls_server: ServerProcess) -> None:
    register()
    ca = quote(str(tls_server.verify), safe="/")
    engine = sa.create_engine(
        f"sqlite+sessionproxy://:{tls_server.token}@127.0.0.1:{tls_server.port}/?ca={ca}"
    )
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t_read")).scalar_one() == 7
        assert engine.dialect.transport.base_url == tls_server.url
    finally:
        engine.dispose()


def test_tls_restart_reuses_the_certificate(
    tls_server: ServerProcess, tls_dir: Path, sqlite_url: str, proxy_engines
) -> None:
    files = [tls_dir / "cert.pem", tls_dir / "key.pem"]
    before = [(path.read_bytes(), path.stat().st_mtime_ns) for path in files]
    with ServerProcess(sqlite_url, tls_dir=tls_dir) as second:
        assert [(path.read_bytes(), path.stat().st_mtime_ns) for path in files] == before
        # The unchanged cert.pem verifies the second server: it serves the same pair.
        with proxy_engines(second, second.token).connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


# -- 2. policy: record, then enforce -----------------------------------------------------


def test_recording_lists_exactly_what_the_worker_ran(
    recorded: tuple[Path, list[str]], sqlite_engine: sa.Engine
) -> None:
    path, sent = recorded
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert set(data["roles"]) == {"worker"}, "no statements recorded for any other role"
    worker = data["roles"]["worker"]
    assert worker["operations"] == []
    assert "allow_ddl" not in worker and "allow_multi_statement" not in worker

    statements = set(worker["statements"])
    sent_fps = {fingerprint(sql) for sql in sent}
    # The ORM's pipelined INSERT shares the Core INSERT's fingerprint; its
    # SELECT by primary key is the third.
    assert {fingerprint(INSERT_ITEM), fingerprint(SELECT_ITEM)} <= sent_fps
    assert len(sent_fps) == 3
    assert sent_fps <= statements
    # Anything else is the dialect's own start-up query, run below the events.
    assert all(fp.startswith("PRAGMA ") for fp in statements - sent_fps), statements
    assert fingerprint(RENAME_ITEM) not in statements

    # Recording allowed everything: the workload's rows are there.
    with sqlite_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, name FROM sp_sec_item WHERE id IN (100, 101)"))
        assert dict(rows.all()) == {100: "core", 101: "orm"}


def test_recorded_workload_runs_under_the_enforced_policy(
    enforcing_server: ServerProcess, sqlite_engine: sa.Engine, proxy_engines
) -> None:
    workload(proxy_engines(enforcing_server, issue("worker", "w2")), 200)
    with sqlite_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, name FROM sp_sec_item WHERE id IN (200, 201)"))
        assert dict(rows.all()) == {200: "core", 201: "orm"}


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_refused_statement_leaves_the_transaction_usable(
    enforcing_server: ServerProcess, sqlite_engine: sa.Engine, proxy_engines, ending: str
) -> None:
    item_id = {"commit": 300, "rollback": 301}[ending]
    engine = proxy_engines(enforcing_server, issue("worker", "w3"))
    with engine.connect() as conn:
        conn.execute(sa.text(INSERT_ITEM), {"id": item_id, "name": "kept"})
        lease = transaction_id(conn)
        assert lease is not None

        with pytest.raises(sa.exc.ProgrammingError) as caught:
            conn.execute(sa.text(RENAME_ITEM), {"id": item_id, "name": "renamed"})
        denied = caught.value.orig
        assert isinstance(denied, errors.AccessDenied)
        assert denied.fingerprint == fingerprint(RENAME_ITEM)
        assert denied.reason == "not_allowlisted"
        assert "'worker'" in str(denied)

        # The 403 came before any step ran: same lease, the insert still
        # pending in it, the update never applied.
        assert transaction_id(conn) == lease
        assert conn.execute(sa.text(SELECT_ITEM), {"id": item_id}).scalar_one() == "kept"
        getattr(conn, ending)()
        assert transaction_id(conn) is None

    with sqlite_engine.connect() as conn:
        stored = conn.execute(sa.text(SELECT_ITEM), {"id": item_id}).scalar_one_or_none()
    assert stored == ("kept" if ending == "commit" else None)


def test_refusal_does_not_silently_drop_a_pipelined_flush(
    enforcing_server: ServerProcess, sqlite_engine: sa.Engine, proxy_engines
) -> None:
    engine = proxy_engines(enforcing_server, issue("worker", "w4"))
    with sessionmaker(class_=ProxySession, bind=engine)() as session:
        session.add(Item(id=500, name="flushed"))
        # Autoflush queues the (allowed) INSERT in front of the refused UPDATE
        # (an ORM-enabled statement: SQLAlchemy 2.0 autoflushes only for those).
        with pytest.raises(sa.exc.ProgrammingError) as caught:
            session.execute(sa.update(Item).where(Item.id == 1).values(name="x"))
        assert isinstance(caught.value.orig, errors.AccessDenied)
        # The INSERT never ran, so committing must not report success.
        with pytest.raises(sa.exc.DBAPIError):
            session.commit()
        session.rollback()
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text(SELECT_ITEM), {"id": 500}).scalar_one_or_none() is None


def test_admin_runs_what_the_worker_may_not(
    enforcing_server: ServerProcess, sqlite_engine: sa.Engine, proxy_engines
) -> None:
    with sqlite_engine.begin() as conn:
        conn.execute(sa.text(INSERT_ITEM), {"id": 400, "name": "before"})
    with proxy_engines(enforcing_server, enforcing_server.token).begin() as conn:
        result = conn.execute(sa.text(RENAME_ITEM), {"id": 400, "name": "by admin"})
        assert result.rowcount == 1
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text(SELECT_ITEM), {"id": 400}).scalar_one() == "by admin"


# -- 3. table rules ----------------------------------------------------------------------


def test_table_rules(rules_server: ServerProcess, sqlite_engine: sa.Engine, proxy_engines) -> None:
    engine = proxy_engines(rules_server, issue("worker", "tables"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT x FROM t_read")).scalars().all() == [7]

        with pytest.raises(sa.exc.ProgrammingError) as caught:
            conn.execute(sa.text("INSERT INTO t_read (x) VALUES (:x)"), {"x": 8})
        denied = caught.value.orig
        assert isinstance(denied, errors.AccessDenied)
        assert denied.reason == "table_access"
        assert "'t_read'" in str(denied) and "'worker'" in str(denied)
        assert denied.fingerprint == fingerprint("INSERT INTO t_read (x) VALUES (?)")

        conn.execute(sa.text("INSERT INTO t_write (x) VALUES (:x)"), {"x": 9})
        # Reading t_read to write t_write is both rules at once.
        conn.execute(sa.text("INSERT INTO t_write (x) SELECT x FROM t_read"))
        conn.commit()

    with sqlite_engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT x FROM t_write")).scalars()) == [7, 9]
        assert conn.execute(sa.text("SELECT x FROM t_read")).scalars().all() == [7]


# -- 4. logical operations per role ----------------------------------------------------------


def test_operations_per_role(rules_server: ServerProcess, sqlite_engine: sa.Engine) -> None:
    client = RemoteClient(rules_server.url, token=issue("worker", "ops"))
    try:
        assert client.call(ECHO, ({"nested": [1, 2]},), {}) == {"nested": [1, 2]}
        assert client.call(COUNT_NOTES, (), {}) == 0

        with pytest.raises(errors.AccessDenied) as caught:
            client.call(ADD_NOTE, (1, "not allowed"), {})
        assert caught.value.reason == "operation"
        assert caught.value.fingerprint == ""
        assert ADD_NOTE in str(caught.value) and "'worker'" in str(caught.value)
    finally:
        client.close()
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sp_logical_note")).scalar_one() == 0


# -- 5. trusted clients ----------------------------------------------------------------------


def test_trusted_clients_accept_pickled_values(trusted_server: ServerProcess) -> None:
    value = Opaque("round trip", [1, 2, 3])
    client = RemoteClient(trusted_server.url, token=issue("worker", "trusted"), pickle_values=True)
    try:
        echoed = client.call(ECHO, (value,), {})
    finally:
        client.close()
    # Unpickled on the server, handed to the operation, pickled back.
    assert type(echoed) is Opaque and echoed == value and echoed is not value
    assert "--trusted-clients" in trusted_server.log_path.read_text()


def test_untrusted_server_refuses_pickled_values(rules_server: ServerProcess) -> None:
    token = issue("worker", "untrusted")
    plain = RemoteClient(rules_server.url, token=token)
    pickling = RemoteClient(rules_server.url, token=token, pickle_values=True)
    try:
        # Without pickle_values the client will not even send it.
        with pytest.raises(TypeError, match="cannot send a value of type"):
            plain.call(ECHO, (Opaque("x", []),), {})
        with pytest.raises(errors.RequestRejected) as caught:
            pickling.call(ECHO, (Opaque("x", []),), {})
        assert "unsafe_payload" in str(caught.value)
        assert "HTTP 400" in str(caught.value)
        assert "--trusted-clients" in str(caught.value)
        # The same client's JSON-representable calls still go through.
        assert pickling.call(ECHO, ([1, "two"],), {}) == [1, "two"]
    finally:
        plain.close()
        pickling.close()


# -- 6. limits -----------------------------------------------------------------------------


def test_transactions_per_subject(limits_server: ServerProcess, proxy_engines) -> None:
    w1 = proxy_engines(limits_server, issue("worker", "w1"))
    w2 = proxy_engines(limits_server, issue("worker", "w2"))
    first = w1.connect()
    try:
        first.execute(sa.text("SELECT 1"))
        assert transaction_id(first) is not None

        with w1.connect() as second:
            with pytest.raises(sa.exc.OperationalError) as caught:
                second.execute(sa.text("SELECT 2"))
        busy = caught.value.orig
        assert isinstance(busy, errors.ServerBusy)
        assert "'w1'" in str(busy) and "limit per subject" in str(busy)
        assert busy.retry_after == 1

        # Another subject is not affected.
        with w2.connect() as other:
            assert other.execute(sa.text("SELECT 3")).scalar_one() == 3
            assert metric(limits_server, "session_proxy_open_transactions") == 2
            other.commit()

        first.commit()
        with w1.connect() as again:
            assert again.execute(sa.text("SELECT 4")).scalar_one() == 4
            again.commit()
    finally:
        first.close()
    # The COMMITs of transactions that only read went without waiting.
    assert background.drain(10)
    assert metric(limits_server, "session_proxy_open_transactions") == 0


def test_busy_transaction_is_rolled_back_after_the_longest_allowed(
    short_transactions_server: ServerProcess, sqlite_engine: sa.Engine, proxy_engines
) -> None:
    engine = proxy_engines(short_transactions_server, issue("worker", "long"))
    caught: list[sa.exc.DBAPIError] = []
    selects = 0

    def expired() -> bool:
        nonlocal selects
        try:
            conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            caught.append(exc)
            return True
        selects += 1
        return False

    with engine.connect() as conn:
        conn.execute(sa.text("INSERT INTO sp_sec_limit (x) VALUES (:x)"), {"x": 1})
        # Never idle for long (the lease is 30 s), yet rolled back.
        wait_for(expired, timeout=20, interval=0.2)
        conn.rollback()
    assert selects >= 1
    assert isinstance(caught[0].orig, errors.TransactionExpired)
    assert "open longer than the limit" in str(caught[0].orig)
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sp_sec_limit")).scalar_one() == 0
    assert metric(short_transactions_server, "session_proxy_lease_expiries_total") == 1
    assert metric(short_transactions_server, "session_proxy_open_transactions") == 0


SLOW_SQLITE = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) "
    "SELECT count(*) FROM c"
)


def test_statement_timeout(
    backend: str, limits_server: ServerProcess, direct_engine: sa.Engine, proxy_engines
) -> None:
    slow = proxy_engines(limits_server, issue("worker", "slow"))
    with slow.connect() as conn:
        if backend == "postgresql":
            with pytest.raises(sa.exc.OperationalError) as caught:
                conn.execute(sa.text("SELECT pg_sleep(5)"))
            assert "statement timeout" in str(caught.value.orig)
            assert caught.value.orig.sqlstate == "57014"  # query_canceled
        elif backend == "mysql":
            with direct_engine.connect():
                mariadb = direct_engine.dialect.is_mariadb
            if mariadb:
                # max_statement_time aborts any statement, SLEEP included.
                with pytest.raises(sa.exc.OperationalError) as caught:
                    conn.execute(sa.text("SELECT SLEEP(5)"))
                assert caught.value.orig.errno == 1969
                assert "max_statement_time exceeded" in str(caught.value.orig)
            else:
                # MySQL's max_execution_time interrupts SLEEP, which returns 1.
                assert conn.execute(sa.text("SELECT SLEEP(5)")).scalar_one() == 1
        else:
            with pytest.raises(sa.exc.OperationalError) as caught:
                conn.execute(sa.text(SLOW_SQLITE))
            assert "interrupted" in str(caught.value.orig)
        # The transaction stayed open for its client to roll back ...
        assert transaction_id(conn) is not None
        conn.rollback()
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        conn.commit()

    # ... and the server goes on serving other clients.
    other = proxy_engines(limits_server, issue("worker", "after-timeout"))
    with other.connect() as conn:
        assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2


# -- 7. health and metrics -----------------------------------------------------------------


def test_health_checks_a_token_only_when_given(trusted_server: ServerProcess) -> None:
    health = trusted_server.url + "/v1/health"
    anonymous = requests.get(health, timeout=10)
    assert anonymous.status_code == 200
    # Without a token: up, and nothing about the database or the software.
    assert anonymous.json() == {"status": "ok", "protocol": 1}

    bad = requests.get(health, headers={"Authorization": "Bearer not-a-token"}, timeout=10)
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "unauthorized"
    assert bad.headers["WWW-Authenticate"].startswith("Bearer")

    good = requests.get(health, headers=trusted_server.headers, timeout=10)
    assert good.status_code == 200
    assert good.json()["dialect"] == "sqlite"
    assert "SQLAlchemy" in good.json()["server_version"]

    # A client with a bad token learns it at the handshake.
    with pytest.raises(errors.AuthenticationFailed):
        session_proxy.create_engine(trusted_server.url, token="not-a-token")


def test_metrics_need_a_token(trusted_server: ServerProcess) -> None:
    metrics = trusted_server.url + "/v1/metrics"
    refused = requests.get(metrics, timeout=10)
    assert refused.status_code == 401
    assert "session_proxy_requests_total" not in refused.text

    served = requests.get(metrics, headers=trusted_server.headers, timeout=10)
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("text/plain")
    assert 'session_proxy_requests_total{endpoint="metrics",status="401"}' in served.text


# -- 8. CLI ----------------------------------------------------------------------------------


def test_cli_keys_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    first = run_cli("keys", "generate", "--dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    private = tmp_path / "session-proxy-private.pem"
    public = tmp_path / "session-proxy-public.pem"
    keys = (private.read_bytes(), public.read_bytes())

    second = run_cli("keys", "generate", "--dir", str(tmp_path))
    assert second.returncode == 2
    assert str(private) in second.stderr
    assert (private.read_bytes(), public.read_bytes()) == keys

    forced = run_cli("keys", "generate", "--dir", str(tmp_path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert private.read_bytes() != keys[0]


def test_cli_token_issue(tmp_path: Path) -> None:
    private, public = signing_key()
    base = ("token", "issue", "--private-key", str(private), "--role", "worker")

    bad = run_cli(*base, "--subject", "host-1", "--ttl", "5w")
    assert bad.returncode == 2
    assert "'5w'" in bad.stderr
    assert bad.stdout == ""

    good = run_cli(*base, "--subject", "host-1", "--ttl", "30m")
    assert good.returncode == 0, good.stderr
    claims = TokenVerifier(load_public_key(public), "session-proxy").verify(good.stdout.strip())
    assert (claims.role, claims.subject) == ("worker", "host-1")
    assert claims.expires_at - claims.issued_at == 1800


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--policy", "a.json", "--policy-record", "b.json"], ["--policy", "--policy-record"]),
        (["--insecure-no-auth"], ["public key", "--insecure-no-auth"]),
        (["--tls-cert", "cert.pem"], ["--tls-cert", "--tls-key"]),
        (["--tls-key", "key.pem"], ["--tls-cert", "--tls-key"]),
    ],
    ids=["policy-and-record", "key-and-no-auth", "cert-without-key", "key-without-cert"],
)
def test_cli_refuses_conflicting_options(
    tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    database = tmp_path / "never.db"
    result = run_cli(
        "--db-url", f"sqlite:///{database}", "--public-key", str(signing_key()[1]), *args
    )
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("session-proxy-server: ")
    for option in expected:
        assert option in message
    assert "listening" not in result.stdout
    assert not database.exists()


def test_insecure_no_auth_warns_and_lets_anyone_in(sqlite_url: str, proxy_engines) -> None:
    with ServerProcess(sqlite_url, auth=False) as proc:
        assert proc.token is None
        with proxy_engines(proc, None).connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t_read")).scalar_one() == 7
        log = proc.log_path.read_text()
    assert "WARNING" in log and "AUTHENTICATION IS OFF" in log


def test_authenticated_server_logs_no_auth_warning(trusted_server: ServerProcess) -> None:
    assert "AUTHENTICATION IS OFF" not in trusted_server.log_path.read_text()
