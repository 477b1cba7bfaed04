"""``sessionproxy://[:TOKEN@]host:port/``: the backend comes from the server.

An application that can change only its connection URL may not know (or may
not want to say) which database sits behind the server, and some refuse URLs
by their prefix: Airflow, for one, insists that any URL starting with
``sqlite`` names an absolute file path.  This URL names no backend.  At
``create_engine`` time SQLAlchemy loads the ``sessionproxy`` entry point
(:class:`SessionProxyDialect`) and asks it for the real dialect class
(:meth:`SessionProxyDialect.get_dialect_cls`); that asks the server's
handshake which backend it fronts and returns the matching
``<backend>+sessionproxy`` class, which then builds the engine exactly as the
explicit URL would.

The handshake is fetched once per URL and process and cached
(:func:`handshake_for`); the engine's transport starts from the cached copy
(:func:`cached_handshake`), so a ``sessionproxy://`` engine sends the same
requests as an explicit one.  The server tells its backend only to callers
with a valid token, so the token must be known when the engine is created:
the URL's password slot, or the ``SESSION_PROXY_TOKEN`` environment
variable (``create_engine(proxy_token=...)`` arrives too late for this).
Options (``tls``, ``ca``, ``timeout``, ``retries``) are those of the
explicit URLs.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from sqlalchemy.engine import URL, Dialect

from ..config import TOKEN_VARIABLE, ClientConfig
from ..errors import AuthenticationFailed, ProxyError, ProxyTimeout, ServerUnreachable
from ..transport import HTTPTransport
from ..wire.messages import Handshake

#: The drivername of the backend-neutral URL.
NEUTRAL_NAME = "sessionproxy"

_handshakes: dict[tuple[str, str | None], Handshake] = {}
_lock = threading.Lock()


def is_neutral(url: URL) -> bool:
    """True when ``url`` is a ``sessionproxy://`` URL."""
    return url.drivername == NEUTRAL_NAME


def _config_and_key(url: URL) -> tuple[ClientConfig, tuple[str, str | None]]:
    config = ClientConfig.from_dialect_url(url).with_env_token(TOKEN_VARIABLE)
    return config, (url.render_as_string(hide_password=False), config.token)


def cached_handshake(url: URL) -> Handshake | None:
    """The handshake :func:`handshake_for` fetched for ``url``, if any."""
    if not is_neutral(url):
        return None
    _, key = _config_and_key(url)
    return _handshakes.get(key)


def handshake_for(url: URL) -> Handshake:
    """The handshake of the server ``url`` names: fetched once, then cached.

    Raises :class:`~session_proxy.errors.ServerUnreachable` naming the URL
    (password hidden) when the server cannot be reached, and
    :class:`~session_proxy.errors.AuthenticationFailed` when it wants a token the
    URL and the environment do not give.
    """
    config, key = _config_and_key(url)
    with _lock:
        known = _handshakes.get(key)
        if known is not None:
            return known
        shown = url.render_as_string(hide_password=True)
        probe = HTTPTransport(config)
        try:
            handshake = probe.handshake()
        except (ServerUnreachable, ProxyTimeout) as exc:
            raise type(exc)(
                f"{shown}: cannot learn the database backend, the session-proxy "
                f"server at {config.url} did not answer its handshake: {exc}"
            ) from exc
        except AuthenticationFailed as exc:
            raise AuthenticationFailed(
                f"{shown}: the session-proxy server at {config.url} names its backend "
                "only to a valid token; put it in the URL (sessionproxy://:TOKEN@host:port/) "
                f"or in ${TOKEN_VARIABLE}: {exc}"
            ) from exc
        finally:
            probe.close()
        _handshakes[key] = handshake
        return handshake


def forget_handshakes() -> None:
    """Drop every cached handshake (a server may now front another backend)."""
    with _lock:
        _handshakes.clear()


def dialect_class_for(backend: str, url: URL) -> type[Dialect]:
    """The ``<backend>+sessionproxy`` dialect class."""
    from . import DIALECTS

    if backend not in DIALECTS:
        raise ProxyError(
            f"{url.render_as_string(hide_password=True)}: the server fronts {backend!r}, "
            f"which has no session-proxy dialect (known: {', '.join(sorted(DIALECTS))})"
        )
    module, name = DIALECTS[backend]
    return getattr(importlib.import_module(module), name)


class SessionProxyDialect(Dialect):
    """The ``sessionproxy`` entry point: never instantiated, it picks the class."""

    name = NEUTRAL_NAME
    driver = NEUTRAL_NAME

    @classmethod
    def get_dialect_cls(cls, url: URL) -> type[Dialect]:
        """The proxy dialect of the backend the server's handshake names."""
        return dialect_class_for(handshake_for(url).dialect, url)

    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        """An asyncio stand-in that builds an engine but refuses to connect.

        The proxy's transport is synchronous and SQLAlchemy's asyncio layer
        needs a driver that awaits on every statement, so there is no async
        proxy engine.  Applications that build one from the same URL without
        using it (Airflow does at import) still start; the first connection
        raises :class:`~session_proxy.errors.ProxyError` naming the URL.
        """
        return async_refusal(cls.get_dialect_cls(url), url)

    @classmethod
    def engine_created(cls, engine: Any) -> None:
        return None




def async_refusal(dialect_cls: type[Dialect], url: URL) -> type[Dialect]:
    """``dialect_cls`` flagged asyncio, with an async pool, whose connect raises."""
    shown = url.render_as_string(hide_password=True)

    def get_pool_class(cls: type, url: URL) -> Any:
        from sqlalchemy.pool import AsyncAdaptedQueuePool

        return AsyncAdaptedQueuePool

    def connect(self: Any, *cargs: Any, **cparams: Any) -> Any:
        raise ProxyError(
            f"{shown}: session-proxy has no asyncio engine (its transport is "
            "synchronous); use a synchronous engine for this URL"
        )

    return type(
        "Async" + dialect_cls.__name__,
        (dialect_cls,),
        {
            "is_async": True,
            "supports_statement_cache": True,
            "get_pool_class": classmethod(get_pool_class),
            "connect": connect,
            "__module__": dialect_cls.__module__,
        },
    )
