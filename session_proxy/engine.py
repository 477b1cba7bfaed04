"""Create a proxy engine from a server address.

:func:`create_engine` asks the server which backend it fronts and builds the
matching ``<backend>+sessionproxy`` engine, so application code needs only
the server's URL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy
from sqlalchemy.engine import Engine

from .config import TOKEN_VARIABLE as TOKEN_VARIABLE
from .config import ClientConfig
from .dialects import register
from .retry import RetryPolicy
from .stats import ProxyStats
from .transport import HTTPTransport


def create_engine(
    server_url: str | ClientConfig,
    *,
    token: str | None = None,
    timeout: float | None = None,
    verify: bool | str | None = None,
    retry: RetryPolicy | None = None,
    pooling: str | None = None,
    **kwargs: Any,
) -> Engine:
    """A SQLAlchemy engine whose statements run on a session-proxy server.

    :param server_url: ``http://host:port`` or ``https://host:port``, or a
        :class:`~session_proxy.config.ClientConfig` holding it and the
        settings below (the keywords, when given, override the config's).
    :param token: bearer token for the server; by default the environment
        variable ``SESSION_PROXY_TOKEN``, if set.
    :param timeout: seconds to wait for each response (default 30).
    :param verify: TLS verification: ``True`` (default), ``False`` or a CA bundle path.
    :param retry: when to send a request again
        (:class:`~session_proxy.retry.RetryPolicy`; by default up to 8 tries
        over at most a minute).  Retries are safe: the server runs each
        request at most once.
    :param pooling: ``"session"`` holds one server database connection per
        client connection, so temporary tables and settings persist across
        its transactions (the server must allow it: ``--session-pooling``);
        default ``"transaction"``.
    :param kwargs: passed on to :func:`sqlalchemy.create_engine`.
    """
    config = ClientConfig.coerce(
        server_url, token=token, timeout=timeout, verify=verify, retry=retry, pooling=pooling
    ).with_env_token(TOKEN_VARIABLE)
    probe = HTTPTransport(config)
    try:
        backend = probe.handshake().dialect
    finally:
        probe.close()
    register()
    return sqlalchemy.create_engine(
        config.dialect_url(backend), proxy_config=config, **kwargs
    )


def stats(source: Any = None) -> ProxyStats:
    """The round-trip, byte, statement and server-time counters of ``source``.

    ``source`` is a proxy engine, a :class:`~session_proxy.logical.RemoteClient`,
    or None for the client of the process-wide remote operations mode.
    """
    if source is None:
        from .logical import remote_client

        source = remote_client()
        if source is None:
            raise TypeError("remote operations are not configured in this process")
    if hasattr(source, "transport") and hasattr(source, "call"):
        return source.transport.stats
    transport = getattr(getattr(source, "dialect", None), "transport", None)
    if transport is None:
        raise TypeError(f"{source!r} is not a session-proxy engine or remote client")
    return transport.stats
