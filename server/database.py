"""The server's real engine: the only place database credentials live.

The engine also carries the statement timeout where the database enforces
it (PostgreSQL's ``statement_timeout`` as a connection startup option,
MySQL's or MariaDB's session variable set on connect); each backend profile
(:mod:`session_proxy_server.backends`) says how.  SQLite has no such setting; the executor
interrupts its statements instead
(:meth:`session_proxy_server.backends.sqlite.SQLiteBackend.statement_deadline`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy
from sqlalchemy.engine import Engine, make_url

from . import backends
from .config import ServerConfig


def create_engine_for(
    db_url: str, config: ServerConfig, sqlite_attach: dict[str, str] | None = None
) -> Engine:
    """The server's engine for ``db_url``, pooled for ``config``.

    ``sqlite_attach`` maps schema names to SQLite database files that every
    pooled connection attaches (``ATTACH DATABASE path AS name``), so
    schema-qualified SQL works on whichever connection serves a transaction.
    """
    url = make_url(db_url)
    backend = backends.for_url(url)
    kwargs: dict[str, Any] = {
        "pool_size": config.max_transactions,
        "max_overflow": 0,
        "pool_timeout": config.lock_wait_seconds,
        "pool_pre_ping": True,
    }
    kwargs.update(backend.engine_kwargs(url, config))
    engine = sqlalchemy.create_engine(url, **kwargs)
    if sqlite_attach:
        # Raises on backends without attached databases; nothing connected yet.
        backend.attach_databases(engine, sqlite_attach)
    backend.on_engine(engine, config)
    return engine
