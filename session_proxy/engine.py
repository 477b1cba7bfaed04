"""Create a proxy engine from a server address.

:func:`create_engine` asks the server which backend it fronts and builds the
matching ``<backend>+sessionproxy`` engine, so application code needs only
the server's URL.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy
from sqlalchemy.engine import URL, Engine

from .dialects import register
from .retry import RetryPolicy
from .stats import ProxyStats
from .transport import HTTPTransport

#: Environment variable holding the bearer token when none is passed.
TOKEN_VARIABLE = "SESSION_PROXY_TOKEN"


def create_engine(
    server_url: str,
    *,
    token: str | None = None,
    timeout: float = 30.0,
    verify: bool | str = True,
    retry: RetryPolicy | None = None,
    **kwargs: Any,
) -> Engine:
    """A SQLAlchemy engine whose statements run on a session-proxy server.

    :param server_url: ``http://host:port`` or ``https://host:port``.
    :param token: bearer token for the server; by default the environment
        variable ``SESSION_PROXY_TOKEN``, if set.
    :param timeout: seconds to wait for each response.
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path.
    :param retry: when to send a request again
        (:class:`~session_proxy.retry.RetryPolicy`; by default up to 8 tries
        over at most a minute).  Retries are safe: the server runs each
        request at most once.
    :param kwargs: passed on to :func:`sqlalchemy.create_engine`.
    """
    parts = urlsplit(server_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"session-proxy server URL must look like http://host:port, got {server_url!r}"
        )
    if token is None:
        token = os.environ.get(TOKEN_VARIABLE) or None
    probe = HTTPTransport(server_url, token=token, timeout=timeout, verify=verify)
    try:
        backend = probe.handshake().dialect
    finally:
        probe.close()
    register()
    url = URL.create(
        f"{backend}+sessionproxy",
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        query={"tls": "true"} if parts.scheme == "https" else {},
    )
    return sqlalchemy.create_engine(
        url,
        proxy_token=token,
        proxy_timeout=timeout,
        proxy_verify=verify,
        proxy_retry=retry,
        **kwargs,
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
