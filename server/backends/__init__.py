"""The backends the server serves, one profile each (see :mod:`session_proxy_server.backends.base`).

:func:`for_url` and :func:`for_engine` map a SQLAlchemy URL or engine to its
:class:`~session_proxy_server.backends.base.Backend`, by dialect name and driver: each
dialect is served through exactly one driver (the one its client dialect
mimics), and the server refuses to start with another.

To add a backend, add its module here (:data:`BUILTIN`); see
``docs/architecture.md``, "How to add a backend".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from .base import PARAMETER_ERRORS, Backend, BackendDefaults
from .mysql import BACKEND as MYSQL
from .postgresql import BACKEND as POSTGRESQL
from .sqlite import BACKEND as SQLITE

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

__all__ = [
    "BUILTIN",
    "PARAMETER_ERRORS",
    "Backend",
    "BackendDefaults",
    "by_dialect",
    "for_engine",
    "for_url",
]

#: Every backend the server knows, in the order the docs list them.
BUILTIN: tuple[Backend, ...] = (SQLITE, POSTGRESQL, MYSQL)


def by_dialect() -> dict[str, Backend]:
    """SQLAlchemy dialect name -> the backend serving it."""
    return {name: backend for backend in BUILTIN for name in backend.dialect_names}


def lookup(dialect_name: str, driver: str) -> Backend:
    """The backend serving ``dialect_name`` through ``driver``; ValueError if none."""
    served = by_dialect()
    backend = served.get(dialect_name)
    if backend is None:
        raise ValueError(
            f"session-proxy does not support the {dialect_name!r} backend; "
            f"supported: {', '.join(sorted(served))}"
        )
    if driver != backend.driver:
        raise ValueError(
            f"session-proxy serves {dialect_name} through the {backend.driver!r} driver, "
            f"not {driver!r}; use a {dialect_name}+{backend.driver}:// URL"
        )
    return backend


def for_url(url: str | URL) -> Backend:
    """The backend of a database URL; ValueError if the proxy does not serve it."""
    parsed = make_url(url)
    return lookup(parsed.get_backend_name(), parsed.get_driver_name())


def for_engine(engine: Engine) -> Backend:
    """The backend of an engine made by :func:`session_proxy_server.database.create_engine_for`."""
    return lookup(engine.dialect.name, engine.dialect.driver)
