"""Proxy dialects: the server's real driver dialects over :mod:`session_proxy.dbapi`.

Registered as SQLAlchemy entry points, so ``sqlite+sessionproxy://``,
``postgresql+sessionproxy://`` and ``mysql+sessionproxy://`` URLs work once
the package is installed, and so does the backend-neutral ``sessionproxy://``
(:mod:`session_proxy.dialects.neutral`); :func:`register` does the same without entry points.
"""

from __future__ import annotations

from sqlalchemy.dialects import registry

DIALECTS = {
    "sqlite": ("session_proxy.dialects.sqlite", "SQLiteDialect_sessionproxy"),
    "postgresql": ("session_proxy.dialects.postgresql", "PGDialect_sessionproxy"),
    "mysql": ("session_proxy.dialects.mysql", "MySQLDialect_sessionproxy"),
    "mariadb": ("session_proxy.dialects.mysql", "MariaDBDialect_sessionproxy"),
}


def register() -> None:
    """Register the ``<backend>+sessionproxy`` and ``sessionproxy`` names with SQLAlchemy."""
    for backend, (module, cls) in DIALECTS.items():
        registry.register(f"{backend}.sessionproxy", module, cls)
    registry.register("sessionproxy", "session_proxy.dialects.neutral", "SessionProxyDialect")
