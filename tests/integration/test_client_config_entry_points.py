"""One client configuration object, end to end: each entry point against a real server.

Every entry point is checked against the real server of each backend, so a
setting that an entry point drops shows up as a wrong value on the transport
that actually sends the requests.  The pure parts of the configuration are in
``tests/client/test_client_config.py``.
"""

from __future__ import annotations

import types

import pytest
import sqlalchemy as sa

import session_proxy
from session_proxy.config import ClientConfig
from session_proxy.logical import RemoteClient, configure_remote, remote_client
from session_proxy.retry import RetryPolicy

POLICY = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.1, deadline=5.0)


def test_create_engine_passes_every_setting_to_the_transport(server) -> None:
    config = ClientConfig(server.url, token=server.token, timeout=12.5, retry=POLICY)
    engine = session_proxy.create_engine(config)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        transport = engine.dialect.transport
        assert transport.config == config
        assert (transport.timeout, transport.retry) == (12.5, POLICY)
        assert engine.dialect.proxy_token == server.token
    finally:
        engine.dispose()
    # The keywords override the config's settings, as they did before there was one.
    engine = session_proxy.create_engine(config, timeout=4, retry=session_proxy.NO_RETRIES)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 2")).scalar() == 2
        assert engine.dialect.transport.timeout == 4.0
        assert engine.dialect.transport.retry.attempts == 1
    finally:
        engine.dispose()


def test_a_wrong_token_in_the_config_reaches_the_server(server) -> None:
    if server.token is None:
        pytest.skip("the server runs without authentication")
    with pytest.raises(session_proxy.AuthenticationFailed):
        session_proxy.create_engine(ClientConfig(server.url, token="not-a-token"))


def test_plain_keywords_and_url_options_still_work(server, backend: str) -> None:
    port = server.url.rsplit(":", 1)[1]
    engine = sa.create_engine(
        f"{backend}+sessionproxy://127.0.0.1:{port}/?timeout=11&retries=2",
        proxy_token=server.token,
        proxy_timeout=99,
    )
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 3")).scalar() == 3
        assert engine.dialect.transport.timeout == 11.0  # the URL wins, as before
        assert engine.dialect.transport.retry.attempts == 2
        assert engine.dialect.proxy_config.token == server.token
    finally:
        engine.dispose()


def test_configure_remote_takes_retry_and_a_config(server, monkeypatch) -> None:
    from session_proxy import logical

    monkeypatch.setattr(logical, "_mode", logical._mode)  # restored after the test
    client = configure_remote(server.url, token=server.token, retry=POLICY, timeout=8)
    try:
        assert client.transport.retry == POLICY and client.transport.timeout == 8.0
    finally:
        client.close()
    config = ClientConfig(server.url, token=server.token, retry=POLICY)
    client = RemoteClient(config)
    try:
        assert client.config == config
        # The server names its backend only to a caller whose token it accepts.
        assert client.transport.handshake().dialect in ("sqlite", "postgresql", "mysql")
        configure_remote(config)
        assert remote_client() is not client and remote_client().config == config
        remote_client().close()
    finally:
        client.close()


def test_settings_install_takes_retry(server) -> None:
    from sqlalchemy.orm import scoped_session, sessionmaker

    from session_proxy import settings

    module = types.ModuleType("app_settings")
    module.engine = None
    module.Session = scoped_session(sessionmaker())
    engine = settings.install(module, server.url, token=server.token, retry=POLICY)
    try:
        assert engine.dialect.transport.retry == POLICY
        with settings.create_session(module) as session:
            assert session.execute(sa.text("SELECT 4")).scalar() == 4
    finally:
        settings.uninstall(module)
