"""The client's request path: keep-alive connections, headers built once, errors mapped.

A real server under gunicorn (which keeps HTTP/1.1 connections open) sits
behind :class:`~session_proxy_bench.relay.Relay`, which counts the TCP
connections the client opens.  A proxy engine must run many statements on
one connection, replace a connection the server closed while it sat idle
without any error or retry, and keep reporting failures as the errors of
:mod:`session_proxy.errors`.  TLS verification is checked against gunicorn
serving HTTPS with a self-signed certificate.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import session_proxy
from session_proxy import errors
from session_proxy.retry import NO_RETRIES
from session_proxy.transport import HTTPTransport
from session_proxy_bench.gunicorn_process import GunicornProcess, gunicorn_path
from session_proxy_bench.relay import Relay
from session_proxy_server.tls import generate_self_signed

SELECT_ONE = sa.text("SELECT 1")


def _gunicorn(db_path: Path, **env: str) -> GunicornProcess:
    if gunicorn_path() is None:
        pytest.skip("gunicorn is not installed (extra 'gunicorn')")
    return GunicornProcess(f"sqlite:///{db_path}", threads=4, env_extra=env)


@pytest.fixture(scope="module")
def keepalive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornProcess]:
    with _gunicorn(tmp_path_factory.mktemp("keepalive") / "k.db") as server:
        yield server


def test_hundred_statements_and_a_commit_use_one_tcp_connection(
    keepalive_server: GunicornProcess,
) -> None:
    with Relay(keepalive_server.port) as relay:
        engine = session_proxy.create_engine(relay.url, token=keepalive_server.token)
        assert relay.connections == 1  # create_engine's handshake probe, closed since
        try:
            with engine.begin() as conn:
                for _ in range(100):
                    assert conn.execute(SELECT_ONE).scalar_one() == 1
            stats = session_proxy.stats(engine)
            transport = engine.dialect.transport
            assert stats.round_trips >= 101  # each SELECT, then the COMMIT
            assert relay.counts["requests"] >= stats.round_trips + 1  # + the handshake
            assert transport.connections_opened == 1
            assert relay.connections == 2
        finally:
            engine.dispose()


def test_a_connection_the_server_closed_while_idle_is_replaced_without_error(
    tmp_path: Path,
) -> None:
    # gunicorn closes a keep-alive connection after 1 idle second here.
    with _gunicorn(tmp_path / "idle.db", GUNICORN_CMD_ARGS="--keep-alive 1") as server:
        engine = session_proxy.create_engine(
            server.url, token=server.token, retry=NO_RETRIES
        )
        try:
            with engine.connect() as conn:
                assert conn.execute(SELECT_ONE).scalar_one() == 1
                time.sleep(2.5)  # let the server close the idle connection
                assert conn.execute(SELECT_ONE).scalar_one() == 1
            assert engine.dialect.transport.connections_opened == 2
            assert session_proxy.stats(engine).retries == 0
        finally:
            engine.dispose()


def test_headers_are_built_once_and_sent_on_every_request(
    keepalive_server: GunicornProcess,
) -> None:
    transport = HTTPTransport(keepalive_server.url, token=keepalive_server.token)
    try:
        headers = transport.headers
        assert headers["Authorization"] == f"Bearer {keepalive_server.token}"
        assert transport.handshake().dialect == "sqlite"  # needs the token's header
        transport.ping()
        transport.ping()
        assert transport.headers is headers
        assert transport.connections_opened == 1
        with pytest.raises(TypeError):
            headers["Authorization"] = "changed"  # type: ignore[index]
    finally:
        transport.close()


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # connections complete in the backlog; nothing answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        transport = HTTPTransport(url, timeout=0.5, retry=NO_RETRIES)
        with pytest.raises(errors.ProxyTimeout, match=r"within 0\.5 s \(ReadTimeout\)"):
            transport.pipeline("t", [])
        transport.close()


def test_a_refused_connection_is_server_unreachable_and_retried() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{placeholder.getsockname()[1]}"  # bound, not listening
        transport = HTTPTransport(
            url, retry=session_proxy.RetryPolicy(attempts=3, first_delay=0.0, max_delay=0.0)
        )
        with pytest.raises(errors.ServerUnreachable, match="connect failed") as info:
            transport.pipeline("t", [])
    assert url in str(info.value) and "sent 3 times" in str(info.value)
    assert transport.stats.retries == 2 and transport.stats.round_trips == 0


class _TLSGunicorn(GunicornProcess):
    """gunicorn serving HTTPS with the self-signed certificate in ``tls_dir``."""

    def __init__(self, db_url: str, tls_dir: Path) -> None:
        cert, key = generate_self_signed(tls_dir)
        self._cert = str(cert)
        super().__init__(db_url, threads=4, env_extra={
            "GUNICORN_CMD_ARGS": f"--certfile {cert} --keyfile {key}",
        })

    def _launch(self, name: str, start_timeout: float) -> None:
        self.url = self.url.replace("http://", "https://")
        self.verify = self._cert
        super()._launch(name, start_timeout)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornProcess]:
    if gunicorn_path() is None:
        pytest.skip("gunicorn is not installed (extra 'gunicorn')")
    db = tmp_path_factory.mktemp("tls-db") / "t.db"
    with _TLSGunicorn(f"sqlite:///{db}", tmp_path_factory.mktemp("tls-certs")) as server:
        yield server


@pytest.mark.parametrize("verify", ["ca", False])
def test_tls_verified_with_the_ca_or_unverified_keeps_one_connection(
    tls_server: GunicornProcess, verify: str | bool
) -> None:
    assert tls_server.url.startswith("https://")
    engine = session_proxy.create_engine(
        tls_server.url, token=tls_server.token,
        verify=tls_server.verify if verify == "ca" else False,
    )
    try:
        with engine.connect() as conn:
            for _ in range(10):
                assert conn.execute(SELECT_ONE).scalar_one() == 1
        assert engine.dialect.transport.connections_opened == 1
    finally:
        engine.dispose()


def test_tls_default_trust_refuses_a_self_signed_certificate(tls_server: GunicornProcess) -> None:
    transport = HTTPTransport(tls_server.url, token=tls_server.token, retry=NO_RETRIES)
    with pytest.raises(errors.ServerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        transport.handshake()
    assert transport.connections_opened == 0


def test_tls_missing_ca_bundle_is_named(tls_server: GunicornProcess, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    transport = HTTPTransport(tls_server.url, token=tls_server.token, verify=str(missing))
    with pytest.raises(OSError, match="invalid path: .*nowhere.pem"):
        transport.handshake()
    assert transport.stats.retries == 0
