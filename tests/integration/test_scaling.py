"""Two server instances behind nginx as a plain round-robin load balancer.

A transaction spans several requests but lives on one instance.  The tests
run real nginx (Debian's package, configured by :mod:`session_proxy_bench.nginx`
exactly as ``docs/scaling.md`` shows) in front of two real server
processes, and check that transactions opened through the balancer finish
on their own instance, with every row committed once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa

import session_proxy
from session_proxy import errors
from session_proxy.retry import NO_RETRIES, RetryPolicy
from session_proxy.wire import protocol
from session_proxy_bench.nginx import NginxBalancer, nginx_binary
from session_proxy_server.testing import ServerProcess, free_port
from tests.conftest import ON_CI

TABLE = "sp_scaling"
TIMEOUT = 30

pytestmark = pytest.mark.server_faults

metadata = sa.MetaData()
rows = sa.Table(
    TABLE,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("instance", sa.String(64)),
)


@pytest.fixture(scope="module", autouse=True)
def _nginx_installed() -> None:
    if nginx_binary() is None:
        message = "nginx is not installed (apt-get install nginx-light; .ci/run does)"
        if ON_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def direct(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


def start_pair(db_url: str, advertise: bool, *extra: str) -> list[ServerProcess]:
    servers = []
    for name in ("alpha", "beta"):
        port = free_port()
        flags = ["--instance", name, *extra]
        if advertise:
            flags += ["--advertise-url", f"http://127.0.0.1:{port}"]
        servers.append(ServerProcess(db_url, *flags, port=port))
    return servers


@pytest.fixture
def cluster(request, db_url: str) -> Iterator[tuple[list[ServerProcess], NginxBalancer]]:
    advertise = getattr(request, "param", True)
    servers = start_pair(db_url, advertise)
    balancer = NginxBalancer([server.port for server in servers])
    yield servers, balancer
    balancer.stop()
    for server in servers:
        server.stop()


def post(server: ServerProcess, txn: str | None, steps: list[dict]) -> requests.Response:
    """One raw pipeline request to ``server``."""
    return requests.post(
        server.url + protocol.PIPELINE_PATH,
        json=protocol.pipeline_request(txn, steps),
        headers=server.headers,
        timeout=TIMEOUT,
    )


def pipeline_requests(server: ServerProcess) -> int:
    text = requests.get(
        server.url + protocol.METRICS_PATH, headers=server.headers, timeout=TIMEOUT
    ).text
    return sum(
        int(float(value))
        for value in re.findall(
            r'^session_proxy_requests_total\{endpoint="pipeline",status="200"\} (\S+)$',
            text,
            re.M,
        )
    )


def run_transactions(engine: sa.Engine, count: int) -> None:
    """``count`` transactions of three requests each: insert, read back, commit."""
    for i in range(count):
        with engine.connect() as conn:
            conn.execute(rows.insert().values(id=i, instance="?"))
            assert conn.execute(sa.select(rows.c.id).where(rows.c.id == i)).scalar() == i
            conn.execute(rows.update().where(rows.c.id == i).values(instance="done"))
            conn.commit()


def test_transactions_follow_their_instance_behind_round_robin(direct, cluster) -> None:
    servers, balancer = cluster
    engine = session_proxy.create_engine(
        balancer.url, token=servers[0].token, retry=NO_RETRIES
    )
    run_transactions(engine, 20)
    with direct.connect() as conn:
        assert conn.execute(sa.select(rows.c.id, rows.c.instance).order_by(rows.c.id)).all() == [
            (i, "done") for i in range(20)
        ]
    # Round robin spread the openings over both instances, and no follow-up
    # ever needed a retry: each went straight to its own instance.
    assert all(pipeline_requests(server) > 0 for server in servers)
    assert session_proxy.stats(engine).retries == 0
    engine.dispose()


@pytest.mark.parametrize("cluster", [False], indirect=True)
def test_without_advertised_urls_misrouted_follow_ups_are_retried(direct, cluster) -> None:
    """Instances nobody can reach directly: the balancer sends some follow-ups
    to the wrong instance, which answers 421 having run nothing; the client
    sends them again until they reach the right one."""
    servers, balancer = cluster
    engine = session_proxy.create_engine(
        balancer.url,
        token=servers[0].token,
        retry=RetryPolicy(attempts=12, first_delay=0.01, max_delay=0.05),
    )
    run_transactions(engine, 10)
    with direct.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar() == 10
        assert conn.execute(
            sa.select(sa.func.count()).select_from(rows).where(rows.c.instance == "done")
        ).scalar() == 10
    assert session_proxy.stats(engine).retries > 0
    engine.dispose()


def test_follow_up_at_the_wrong_instance_is_refused_and_runs_nothing(direct, cluster) -> None:
    servers, _ = cluster
    alpha, beta = servers
    opened = post(alpha, None, [{"op": "execute", "params": None,
                                 "sql": f"INSERT INTO {TABLE} VALUES (1, 'alpha')"}]).json()
    assert opened["instance"] == "alpha" and opened["base_url"] == alpha.url
    misrouted = post(beta, opened["txn"], [{"op": "commit"}])
    assert misrouted.status_code == 421
    error = misrouted.json()["error"]
    assert error["code"] == "wrong_instance" and "'beta'" in error["message"]
    committed = post(alpha, opened["txn"], [{"op": "commit"}])
    assert committed.status_code == 200
    with direct.connect() as conn:
        assert conn.execute(sa.select(rows.c.id, rows.c.instance)).all() == [(1, "alpha")]


def test_client_gives_up_on_a_misrouted_transaction_with_transaction_lost(
    direct, cluster
) -> None:
    servers, _ = cluster
    alpha, beta = servers
    engine = session_proxy.create_engine(alpha.url, token=alpha.token, retry=NO_RETRIES)
    with engine.connect() as conn:
        conn.execute(rows.insert().values(id=5, instance="alpha"))
        # Point the open transaction at the other instance, as a stale
        # address would.
        conn.connection.dbapi_connection._base_url = beta.url
        with pytest.raises(sa.exc.OperationalError) as info:
            conn.commit()
        assert isinstance(info.value.orig, errors.TransactionLost)
        assert "another server instance" in str(info.value.orig)
    engine.dispose()


def test_sessions_follow_their_instance_behind_round_robin(db_url: str) -> None:
    """Session pooling behind the balancer: every request of a session reaches its instance."""
    servers = start_pair(db_url, True, "--session-pooling")
    balancer = NginxBalancer([server.port for server in servers])
    engine = sa.create_engine(
        f"sessionproxy://:{servers[0].token}@127.0.0.1:{balancer.port}/?pooling=session"
    )
    try:
        connections = [engine.connect() for _ in range(4)]
        for number, conn in enumerate(connections):
            conn.exec_driver_sql("CREATE TEMPORARY TABLE sp_scaling_tmp (id INTEGER)")
            conn.exec_driver_sql(f"INSERT INTO sp_scaling_tmp VALUES ({number})")
            conn.commit()
        for number, conn in enumerate(connections):
            assert conn.exec_driver_sql("SELECT id FROM sp_scaling_tmp").scalar() == number
            conn.commit()
        held = [server.metric("session_proxy_open_sessions") for server in servers]
        assert sum(held) == 4 and min(held) >= 1, held
        for conn in connections:
            conn.close()
        engine.dispose()  # closes the pooled client connections: sessions released
        assert [server.metric("session_proxy_open_sessions") for server in servers] == [0, 0]
    finally:
        engine.dispose()
        balancer.stop()
        for server in servers:
            server.stop()
