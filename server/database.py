"""The server's real engine: the only place database credentials live.

The engine also carries the statement timeout where the database enforces
it (PostgreSQL's ``statement_timeout`` as a connection startup option,
MySQL's or MariaDB's session variable set on connect); each backend profile
(:mod:`session_proxy_server.backends`) says how.  SQLite has no such setting; the executor
interrupts its statements instead
(:meth:`session_proxy_server.backends.sqlite.SQLiteBackend.statement_deadline`).

A pooled connection is pinged before use only when it sat idle longer than
``pre_ping_idle_seconds`` (:func:`ping_when_idle`): one used a moment ago is
alive as far as a ping could tell, and the ping is a database round trip.
A connection that died anyway fails its first statement, and the executor
drops it from the pool (it is invalidated or reset before reuse).  A
connection returning to the pool is rolled back unless its session reset
just did that (:func:`rollback_on_return`).
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy
from sqlalchemy import event, exc
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
        # Rolled back by :func:`rollback_on_return` instead, which knows a
        # connection whose session reset rolled it back already.
        "pool_reset_on_return": None,
        # Held sessions take connections of their own, beside the leases'.
        "pool_size": config.max_transactions
        + (config.max_sessions if config.session_pooling else 0),
        "max_overflow": 0,
        "pool_timeout": config.lock_wait_seconds,
    }
    kwargs.update(backend.engine_kwargs(url, config))
    engine = sqlalchemy.create_engine(url, **kwargs)
    if sqlite_attach:
        # Raises on backends without attached databases; nothing connected yet.
        backend.attach_databases(engine, sqlite_attach)
    backend.on_engine(engine, config)
    ping_when_idle(engine, config.pre_ping_idle_seconds)
    rollback_on_return(engine)
    return engine


#: Key in a pooled connection's ``info``: its session was just reset, which
#: rolled back; nothing to roll back when it returns to the pool.
RESET_DONE = "session_proxy_reset_done"


def rollback_on_return(engine: Engine) -> None:
    """Roll back a connection returning to the pool, as the pool's default does,
    except after a session reset (:data:`RESET_DONE`): one round trip less
    per MySQL transaction, whose driver sends every ``ROLLBACK``."""

    @event.listens_for(engine, "reset")
    def reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        done = record is not None and record.info.pop(RESET_DONE, False)
        if done or state.terminate_only or not state.asyncio_safe:
            return
        if not state.transaction_was_reset:
            engine.dialect.do_rollback(dbapi_connection)


#: Key in a pooled connection's ``info`` of the time it went back to the pool.
_CHECKED_IN = "session_proxy_checked_in"


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Ping a connection on checkout when it sat idle over ``idle_seconds``.

    A failed ping raises :class:`sqlalchemy.exc.DisconnectionError`, on
    which the pool discards the connection and checks out (connects) another.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since <= idle_seconds:
            return  # fresh from connect, or used moments ago
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any driver failure means dead
            raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error
        if not alive:
            raise exc.DisconnectionError("pooled connection failed its ping")
