"""The client's connection settings, declared once: :class:`ClientConfig`.

Every client entry point takes or builds one: :func:`session_proxy.create_engine`,
the proxy dialects (``proxy_config=`` or the older ``proxy_token=``,
``proxy_timeout=``, ``proxy_verify=``, ``proxy_retry=`` keywords and the URL
options ``tls``, ``ca``, ``timeout``, ``retries``),
:class:`~session_proxy.logical.RemoteClient`,
:func:`~session_proxy.logical.configure_remote`, the Airflow-style helpers in
:mod:`session_proxy.settings`, and :class:`~session_proxy.transport.HTTPTransport`,
which is the only place the settings are used.  Build one, pass it anywhere::

    config = ClientConfig("https://proxy:8765", token=token, verify="ca.pem",
                          retry=RetryPolicy(attempts=3))
    engine = session_proxy.create_engine(config)
    configure_remote(config)

Not for server settings: those are :class:`session_proxy_server.config.ServerConfig`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import util
from sqlalchemy.engine import URL

from .retry import RetryPolicy
from .wire import protocol

#: Environment variable holding the bearer token when none is passed.
TOKEN_VARIABLE = "SESSION_PROXY_TOKEN"

#: Port of a ``<backend>+sessionproxy://`` URL that names none.
DEFAULT_PORT = 8765

#: Seconds to wait for each response, unless told otherwise.
DEFAULT_TIMEOUT = 30.0

#: The options a ``<backend>+sessionproxy://`` URL may carry.
URL_OPTIONS = ("tls", "ca", "timeout", "retries", "pooling")

#: Pooling modes a client may ask for (``pooling=``): see :attr:`ClientConfig.pooling`.
POOLING_MODES = protocol.POOLING_MODES


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Where the server is and how to talk to it.

    :param url: the server, ``http://host:port`` or ``https://host:port``.
    :param token: bearer token sent on every request (None: none).
    :param timeout: seconds to wait for connect and for each response.
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path.
    :param retry: when to send a request again (:class:`~session_proxy.retry.RetryPolicy`;
        by default up to 8 tries over at most a minute).  Retries are safe:
        the server runs each request at most once.
    :param pooling: ``"transaction"`` (default): each transaction runs on
        whichever server connection is free, reset after it, so session
        state lasts one transaction; ``"session"``: each client DBAPI
        connection holds one server database connection until it closes, so
        temporary tables and ``SET``s persist across its transactions (the
        server must be started with ``--session-pooling``).
    """

    url: str
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    verify: bool | str = True
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    pooling: str = "transaction"

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"session-proxy server URL must look like http://host:port, got {self.url!r}"
            )
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.token is not None and not isinstance(self.token, str):
            raise TypeError(f"token must be a string or None, got {type(self.token).__name__}")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, got {self.timeout!r}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        object.__setattr__(self, "timeout", float(self.timeout))
        if not isinstance(self.verify, (bool, str)):
            raise TypeError(
                f"verify must be True, False or a CA bundle path, got {self.verify!r}"
            )
        if self.retry is None:
            object.__setattr__(self, "retry", RetryPolicy())
        elif not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(self.retry).__name__}")
        if self.pooling not in POOLING_MODES:
            raise ValueError(
                f"pooling must be one of {', '.join(POOLING_MODES)}, got {self.pooling!r}"
            )

    @classmethod
    def coerce(
        cls,
        target: str | ClientConfig,
        *,
        token: str | None = None,
        timeout: float | None = None,
        verify: bool | str | None = None,
        retry: RetryPolicy | None = None,
        pooling: str | None = None,
    ) -> ClientConfig:
        """What every entry point does with its arguments.

        ``target`` is a server URL or a :class:`ClientConfig`; the keywords
        that are not None are set on (or override) it.
        """
        changes = _given(
            token=token, timeout=timeout, verify=verify, retry=retry, pooling=pooling
        )
        if isinstance(target, ClientConfig):
            return dataclasses.replace(target, **changes) if changes else target
        if not isinstance(target, str):
            raise TypeError(
                f"expected a server URL or a ClientConfig, got {type(target).__name__}"
            )
        return cls(target, **changes)

    def with_env_token(self, variable: str = TOKEN_VARIABLE) -> ClientConfig:
        """This config, with the token from ``variable`` when it has none."""
        if self.token is not None:
            return self
        token = os.environ.get(variable) or None
        return dataclasses.replace(self, token=token) if token else self

    @property
    def tls(self) -> bool:
        """Whether the server is reached over HTTPS."""
        return self.url.startswith("https://")

    def dialect_url(self, backend: str) -> URL:
        """The ``<backend>+sessionproxy://host:port/`` URL of this server.

        The token, timeout, verification, retry policy and pooling mode are
        not in it: they go to the dialect as ``proxy_config``.
        """
        parts = urlsplit(self.url)
        assert parts.hostname is not None  # checked in __post_init__
        return URL.create(
            f"{backend}+sessionproxy",
            host=parts.hostname,
            port=parts.port or (443 if self.tls else 80),
            query={"tls": "true"} if self.tls else {},
        )

    @classmethod
    def from_dialect_url(
        cls,
        url: URL,
        base: ClientConfig | None = None,
        *,
        token: str | None = None,
        timeout: float | None = None,
        verify: bool | str | None = None,
        retry: RetryPolicy | None = None,
    ) -> ClientConfig:
        """The settings of a ``<backend>+sessionproxy://`` URL.

        ``backend+sessionproxy://[:TOKEN@]host:port/[?tls=true&ca=PATH&timeout=S&retries=N&pooling=session]``:
        the password slot carries the bearer token (used when no ``token``
        is given), ``tls`` switches to HTTPS, ``ca`` names the CA bundle to
        verify the server with (and implies ``tls``), ``timeout`` is seconds
        per response, ``retries`` the attempts per request (1: never retry),
        ``pooling`` ``transaction`` or ``session`` (see :attr:`pooling`).
        The URL's options win over ``base`` and the keywords; ``base``'s own
        ``url`` is replaced by the URL's host and port.
        """
        query = dict(url.query)
        unknown = sorted(set(query) - set(URL_OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown session-proxy URL options {unknown}; supported: {', '.join(URL_OPTIONS)}"
            )
        settings: dict[str, Any] = {}
        if base is not None:
            settings.update(
                token=base.token, timeout=base.timeout, verify=base.verify, retry=base.retry,
                pooling=base.pooling,
            )
        settings.update(_given(token=token, timeout=timeout, verify=verify, retry=retry))
        tls = _url_option(query, "tls", util.asbool, False)
        if "ca" in query:
            settings["verify"] = str(query["ca"])
            tls = True
        if "timeout" in query:
            settings["timeout"] = _url_option(query, "timeout", float, None)
        if "retries" in query:
            attempts = _url_option(query, "retries", int, None)
            settings["retry"] = dataclasses.replace(
                settings.get("retry") or RetryPolicy(), attempts=attempts
            )
        if "pooling" in query:
            settings["pooling"] = str(query["pooling"])
        if settings.get("token") is None and url.password:
            settings["token"] = str(url.password)
        host = url.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return cls(f"{'https' if tls else 'http'}://{host}:{url.port or DEFAULT_PORT}", **settings)


def _given(**values: Any) -> dict[str, Any]:
    """The keyword arguments that were given (are not None)."""
    return {name: value for name, value in values.items() if value is not None}


def _url_option(query: dict[str, Any], name: str, parse: Any, default: Any) -> Any:
    if name not in query:
        return default
    raw = query[name]
    try:
        return parse(raw)
    except (TypeError, ValueError):
        raise ValueError(f"session-proxy URL option {name}={raw!r} is not valid") from None
