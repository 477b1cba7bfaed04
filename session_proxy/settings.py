"""A drop-in for an application's ``settings.Session``, Airflow style.

Applications such as Airflow keep ``engine`` and a scoped ``Session`` in a
settings module and wrap their database code in ``create_session()`` or
``@provide_session``.  This module offers the same contract:

- :func:`configure_orm` builds ``engine`` and ``Session`` here, for a new
  application;
- :func:`create_session`, :func:`provide_session` and :data:`NEW_SESSION`
  behave as Airflow's helpers do, against any settings module;
- :func:`install` points an *existing* settings module at a session-proxy
  server: it replaces the module's ``engine`` and ``Session`` with a proxy
  engine and a scoped :class:`~session_proxy.ProxySession` factory that keeps
  the options the application configured (``autoflush``,
  ``expire_on_commit``, ...), so the application's unchanged code runs
  through the server.  :func:`uninstall` puts the originals back.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session as SASession
from sqlalchemy.orm import scoped_session, sessionmaker

from .config import ClientConfig
from .engine import create_engine
from .retry import RetryPolicy
from .session import ProxySession

__all__ = [
    "NEW_SESSION",
    "Session",
    "configure_orm",
    "create_session",
    "engine",
    "install",
    "provide_session",
    "uninstall",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Default for a ``session`` parameter that :func:`provide_session` fills in.
NEW_SESSION: SASession = cast(SASession, None)

engine: sa.Engine | None = None
Session: scoped_session | None = None

_ORIGINALS = "__session_proxy_originals__"


def configure_orm(
    url: str | ClientConfig,
    *,
    proxy: bool | None = None,
    token: str | None = None,
    verify: bool | str | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    **session_options: Any,
) -> scoped_session:
    """Create this module's ``engine`` and scoped ``Session``.

    ``url`` is a session-proxy server (``http://host:port`` or a
    :class:`~session_proxy.config.ClientConfig`; ``proxy`` is then implied,
    and ``token``, ``verify``, ``timeout`` and ``retry`` go to
    :func:`session_proxy.create_engine`) or a SQLAlchemy URL for a direct
    engine.  ``session_options`` go to :class:`~sqlalchemy.orm.sessionmaker`
    (Airflow uses ``autoflush=False, expire_on_commit=False``).
    """
    global engine, Session
    if Session is not None:
        Session.remove()
    if proxy is None:
        proxy = isinstance(url, ClientConfig) or url.startswith(("http://", "https://"))
    if proxy:
        engine = create_engine(url, token=token, verify=verify, timeout=timeout, retry=retry)
        session_options.setdefault("class_", ProxySession)
    elif isinstance(url, ClientConfig):
        raise ValueError("a ClientConfig names a session-proxy server: proxy=False contradicts it")
    else:
        engine = sa.create_engine(url)
    Session = scoped_session(sessionmaker(bind=engine, **session_options))
    return Session


def _session_registry(settings: ModuleType | None) -> scoped_session:
    registry = getattr(settings, "Session", None) if settings is not None else Session
    if registry is None:
        raise RuntimeError(
            "no Session configured: call configure_orm() or pass the settings module"
        )
    return registry


@contextlib.contextmanager
def create_session(settings: ModuleType | None = None, scoped: bool = True) -> Iterator[SASession]:
    """A session committed on success, rolled back on error, always closed.

    ``settings`` is the module holding ``Session`` (this module by default).
    With ``scoped=False`` a new session is made from the registry's factory
    instead of the thread's scoped one.
    """
    registry = _session_registry(settings)
    session = registry() if scoped else registry.session_factory()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def provide_session(func: F | None = None, *, settings: ModuleType | None = None) -> Any:
    """Pass a session from :func:`create_session` unless the caller gave one.

    Use as ``@provide_session`` or ``@provide_session(settings=app_settings)``.
    """

    def decorate(function: F) -> F:
        parameters = list(inspect.signature(function).parameters)
        if "session" not in parameters:
            raise TypeError(f"{function.__qualname__} has no 'session' parameter")
        position = parameters.index("session")

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("session") is not None or (
                len(args) > position and args[position] is not None
            ):
                return function(*args, **kwargs)
            kwargs.pop("session", None)
            with create_session(settings) as session:
                return function(*args, session=session, **kwargs)

        return cast(F, wrapper)

    return decorate(func) if func is not None else decorate


def _proxy_class(app_class: type) -> type:
    """``ProxySession``, mixed with the application's own Session subclass if any."""
    if issubclass(app_class, ProxySession):
        return app_class
    if app_class is SASession:
        return ProxySession
    return type(f"Proxy{app_class.__name__}", (ProxySession, app_class), {})


def install(
    settings: ModuleType,
    server_url: str | ClientConfig,
    *,
    token: str | None = None,
    timeout: float | None = None,
    verify: bool | str | None = None,
    retry: RetryPolicy | None = None,
) -> sa.Engine:
    """Point ``settings.engine``/``settings.Session`` at a session-proxy server.

    ``server_url`` and the keywords are :func:`session_proxy.create_engine`'s.
    The new ``Session`` is a scoped session of :class:`ProxySession` (mixed
    with the application's own Session subclass, if it has one) with the same
    sessionmaker options the application configured.  Returns the proxy
    engine.
    """
    registry = getattr(settings, "Session", None)
    if not isinstance(registry, scoped_session):
        raise TypeError(
            f"{settings.__name__}.Session must be a scoped_session, got {type(registry).__name__}"
        )
    registry.remove()
    factory = registry.session_factory
    options = dict(factory.kw)
    options.pop("bind", None)
    options["class_"] = _proxy_class(factory.class_.__bases__[0])
    proxy_engine = create_engine(
        server_url, token=token, timeout=timeout, verify=verify, retry=retry
    )
    if not hasattr(settings, _ORIGINALS):
        setattr(settings, _ORIGINALS, (getattr(settings, "engine", None), registry))
    settings.engine = proxy_engine
    settings.Session = scoped_session(sessionmaker(bind=proxy_engine, **options))
    return proxy_engine


def uninstall(settings: ModuleType) -> None:
    """Restore the ``engine`` and ``Session`` that :func:`install` replaced."""
    originals = settings.__dict__.pop(_ORIGINALS, None)
    if originals is None:
        return
    settings.Session.remove()
    proxy_engine = settings.engine
    settings.engine, settings.Session = originals
    proxy_engine.dispose()
