"""The production HTTP server of ``session-proxy-server``, as real processes over real HTTP.

Keep-alive (one TCP connection for 100 proxied statements and a commit,
counted by the server's ``session_proxy_http_connections_total``), the
same over TLS with the client trusting the self-signed certificate, health
answering while half-open sockets are held, and ``--workers``: new
transactions spread across worker processes while every follow-up reaches
the worker that began the transaction.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

import session_proxy
from session_proxy.wire import protocol
from session_proxy.wire.codec import dumps
from session_proxy_server.serving import listen_socket
from session_proxy_server.testing import ServerProcess, issue

CONNECTIONS = "session_proxy_http_connections_total"

# The HTTP server, its workers and its drain: the client's SQLAlchemy version does not matter.
pytestmark = pytest.mark.server_faults


@pytest.fixture
def start_server(db_url: str) -> Iterator:
    started: list[ServerProcess] = []

    def start(*flags: str, url: str | None = None, **kwargs: object) -> ServerProcess:
        proc = ServerProcess(url or db_url, *flags, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _only(backend: str, wanted: str) -> None:
    if backend != wanted:
        pytest.skip(f"the HTTP server does not depend on the backend; runs on {wanted}")


def _hundred_statements_and_commit(server: ServerProcess) -> int:
    """TCP connections the server accepted for 100 statements + commit (one engine)."""
    engine = session_proxy.create_engine(server.url, token=server.token, verify=server.verify)
    before = server.metric(CONNECTIONS)
    with engine.connect() as conn:
        values = [conn.execute(sa.text("SELECT :n"), {"n": n}).scalar() for n in range(100)]
        conn.commit()
    engine.dispose()
    assert values == list(range(100))
    # The second metric read opened one connection of its own.
    return int(server.metric(CONNECTIONS) - before) - 1


def test_keep_alive_one_connection_for_a_hundred_statements(start_server, backend) -> None:
    _only(backend, "sqlite")
    server = start_server()
    statements = server.metric("session_proxy_statements_total")
    assert _hundred_statements_and_commit(server) == 1
    assert server.metric("session_proxy_statements_total") - statements >= 100


def test_the_dev_server_opens_a_connection_per_request(start_server, backend) -> None:
    """The counter the keep-alive test trusts sees every connection Werkzeug opens."""
    _only(backend, "sqlite")
    server = start_server("--dev-server")
    assert _hundred_statements_and_commit(server) >= 101


def test_tls_keep_alive_with_the_self_signed_certificate_trusted(
    start_server, backend, tmp_path: Path
) -> None:
    _only(backend, "sqlite")
    server = start_server(tls_dir=tmp_path / "tls")
    assert server.url.startswith("https://")
    assert server.verify == str(tmp_path / "tls" / "cert.pem")
    connections = _hundred_statements_and_commit(server)
    assert connections == 1
    # Twelve clients kept alive at once (cheroot's own default keeps ten).
    before = server.metric(CONNECTIONS)
    sessions = [requests.Session() for _ in range(12)]
    for _ in range(3):
        for session in sessions:
            assert session.get(server.url + protocol.HEALTH_PATH, verify=server.verify,
                               timeout=10).status_code == 200
    for session in sessions:
        session.close()
    assert server.metric(CONNECTIONS) - before - 1 == 12
    # A client that does not trust the certificate is refused.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + protocol.HEALTH_PATH, timeout=10)


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_health_answers_while_300_half_open_sockets_are_held(start_server, backend) -> None:
    _only(backend, "sqlite")
    server = start_server()
    threads = _threads(server.process.pid)
    held = []
    try:
        for index in range(300):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if index % 2:  # half of them send half a request; the rest nothing
                sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: slow\r\nX-Half: ")
            held.append(sock)
        answers = [requests.get(server.url + protocol.HEALTH_PATH, timeout=5).status_code
                   for _ in range(5)]
        assert answers == [200] * 5
        # No thread per connection: the pool stays as it was.
        assert _threads(server.process.pid) <= threads + 2
        assert server.metric(CONNECTIONS) >= 300 + 5
    finally:
        for sock in held:
            sock.close()


# -- several worker processes ------------------------------------------------------------------


def _worker_ports(server: ServerProcess, count: int) -> list[int]:
    """The private ports the workers printed, once all ``count`` have."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ports = [int(p) for p in re.findall(r"own port (\d+)", server.log_path.read_text())]
        if len(ports) >= count:
            return ports
        time.sleep(0.1)
    raise AssertionError(f"workers did not start: {server.log_path.read_text()}")


def _transactions(url: str, token: str, first: int, count: int) -> None:
    """``count`` transactions, each on a new engine (a new TCP connection)."""
    for n in range(first, first + count):
        engine = session_proxy.create_engine(url, token=token, timeout=30)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sp_workers (n) VALUES (:n)"), {"n": n})
            conn.execute(sa.text("UPDATE sp_workers SET twice = n * 2 WHERE n = :n"), {"n": n})
            assert conn.execute(sa.text("SELECT twice FROM sp_workers WHERE n = :n"),
                                {"n": n}).scalar() == n * 2
        engine.dispose()


def _pipeline_requests(port: int, token: str) -> int:
    """Answered pipeline requests of the worker on ``port``."""
    text = requests.get(f"http://127.0.0.1:{port}{protocol.METRICS_PATH}", timeout=10,
                        headers={"Authorization": f"Bearer {token}"}).text
    return sum(int(float(m)) for m in re.findall(
        r'session_proxy_requests_total\{endpoint="pipeline",status="200"\} (\S+)', text))


def test_transactions_spread_across_workers(start_server, backend, db_url: str) -> None:
    _only(backend, "postgresql")
    direct = sa.create_engine(db_url)
    with direct.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sp_workers")
        conn.exec_driver_sql("CREATE TABLE sp_workers (n INTEGER PRIMARY KEY, twice INTEGER)")
    server = start_server("--workers", "4", "--worker-port-base", "0")
    try:
        ports = _worker_ports(server, 4)
        # A begin on the public port names the private address of the worker holding it.
        begin = requests.post(
            server.url + protocol.PIPELINE_PATH,
            data=protocol_body([{"op": protocol.BEGIN},
                                {"op": protocol.EXECUTE, "sql": "SELECT 1", "params": None}]),
            headers={"Authorization": f"Bearer {server.token}",
                     "Content-Type": protocol.JSON_CONTENT_TYPE},
            timeout=30,
        ).json()
        assert begin["txn"], begin
        assert begin["base_url"] in {f"http://127.0.0.1:{port}" for port in ports}
        requests.post(begin["base_url"] + protocol.PIPELINE_PATH,
                      data=protocol_body([{"op": protocol.ROLLBACK}], begin["txn"]),
                      headers={"Authorization": f"Bearer {server.token}",
                               "Content-Type": protocol.JSON_CONTENT_TYPE}, timeout=30)
        token = issue("worker")
        clients = [multiprocessing.Process(target=_transactions,
                                           args=(server.url, token, 10 * i, 10))
                   for i in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(120)
        assert [client.exitcode for client in clients] == [0] * 4
        with direct.connect() as conn:
            rows = conn.exec_driver_sql("SELECT n, twice FROM sp_workers ORDER BY n").all()
        # No transaction lost: every follow-up reached the worker that began it.
        assert rows == [(n, 2 * n) for n in range(40)]
        served = [_pipeline_requests(port, server.token) for port in ports]
        assert sum(1 for count in served if count) > 1, served
    finally:
        with direct.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS sp_workers")
        direct.dispose()


def protocol_body(steps: list[dict], txn: str | None = None) -> bytes:
    """A pipeline request body."""
    return dumps(protocol.pipeline_request(txn, steps))


def test_a_dead_worker_is_started_again(start_server, backend) -> None:
    _only(backend, "sqlite")
    server = start_server("--workers", "2", "--worker-port-base", "0")
    _worker_ports(server, 2)
    children = [int(pid) for pid in re.findall(r"pid (\d+)", server.log_path.read_text())]
    os.kill(children[0], signal.SIGKILL)
    ports = _worker_ports(server, 3)  # the replacement prints its own line
    assert requests.get(f"http://127.0.0.1:{ports[-1]}{protocol.HEALTH_PATH}",
                        timeout=10).status_code == 200
    server.process.terminate()
    assert server.process.wait(30) == 0
    for pid in children[1:]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_sigterm_drains_every_worker(start_server, backend) -> None:
    """An open transaction on a worker still commits after SIGTERM reached the parent."""
    _only(backend, "sqlite")
    server = start_server("--workers", "2", "--worker-port-base", "0", "--drain-seconds", "30")
    ports = _worker_ports(server, 2)
    engine = session_proxy.create_engine(server.url, token=server.token, timeout=30)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 41 + 1")).scalar() == 42  # opens the transaction
        server.process.terminate()
        deadline = time.monotonic() + 20
        statuses: list[int] = []
        while time.monotonic() < deadline:
            statuses = [_health_status(port) for port in ports]
            if sorted(statuses) == [0, 503]:
                break
            time.sleep(0.05)
        # The idle worker drained at once and stopped (0: refused); the one
        # holding the transaction is draining (503).
        assert sorted(statuses) == [0, 503]
        assert server.process.poll() is None  # waiting for the open transaction
        assert conn.execute(sa.text("SELECT 2 * 21")).scalar() == 42
        conn.commit()
    engine.dispose()
    assert server.process.wait(30) == 0


def _health_status(port: int) -> int:
    """Health's status on ``port``, 0 when nothing listens there."""
    try:
        return requests.get(f"http://127.0.0.1:{port}{protocol.HEALTH_PATH}", timeout=5).status_code
    except requests.ConnectionError:
        return 0


def test_workers_refuse_a_port_another_server_shares(db_url: str, backend) -> None:
    """SO_REUSEPORT would let new workers join an older server's port: refused instead."""
    _only(backend, "sqlite")
    older = listen_socket("127.0.0.1", 0, reuse_port=True)
    try:
        port = older.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "session_proxy_server.cli", "--db-url", db_url,
             "--insecure-no-auth", "--port", str(port), "--workers", "2"],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        older.close()
    assert result.returncode == 2
    assert "Address already in use" in result.stderr


def test_the_serving_comparison_runs(db_url: str, backend) -> None:
    """``python -m session_proxy_bench.serving_compare``, tiny: its table counts connections."""
    _only(backend, "sqlite")
    result = subprocess.run(
        [sys.executable, "-m", "session_proxy_bench.serving_compare", "--db-url", db_url,
         "--servers", "werkzeug,waitress", "--samples", "5", "--cpu-requests", "5",
         "--seconds", "0.3", "--half-open", "20"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in result.stdout.splitlines() if line.startswith("| ")}
    # Columns: SELECT p50, health p50, TCP conns for the health GETs, CPU, tx/s, half-open.
    assert rows["werkzeug"][2] == "5"
    assert rows["waitress"][2] == "1"
    assert rows["waitress"][5].startswith("20 held: 5/5 health")
