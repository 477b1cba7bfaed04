"""The server's real engine: the only place database credentials live.

The engine also carries the statement timeout where the database enforces
it: PostgreSQL's ``statement_timeout`` as a connection startup option and
MySQL's or MariaDB's session variable set on connect.  SQLite has no such
setting; the executor interrupts its statements instead
(:func:`server.drivers.statement_deadline`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from .config import ServerConfig
from .drivers import check_supported, family, mysql_statement_timeout, sqlite_state


def create_engine_for(
    db_url: str, config: ServerConfig, sqlite_attach: dict[str, str] | None = None
) -> Engine:
    """The server's engine for ``db_url``, pooled for ``config``.

    ``sqlite_attach`` maps schema names to SQLite database files that every
    pooled connection attaches (``ATTACH DATABASE path AS name``), so
    schema-qualified SQL works on whichever connection serves a transaction.
    """
    url = make_url(db_url)
    check_supported(url.get_backend_name(), url.get_driver_name())
    kwargs: dict[str, Any] = {
        "pool_size": config.max_transactions,
        "max_overflow": 0,
        "pool_timeout": config.lock_wait_seconds,
        "pool_pre_ping": True,
    }
    backend = family(url.get_driver_name())
    if sqlite_attach and backend != "sqlite":
        raise ValueError("--sqlite-attach applies to SQLite databases only")
    if backend == "sqlite":
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            raise ValueError(
                "session-proxy needs a SQLite database file that several "
                "connections can open; an in-memory database is not supported"
            )
        kwargs["poolclass"] = sqlalchemy.pool.QueuePool
        kwargs["connect_args"] = {"check_same_thread": False}
    elif backend == "postgresql":
        # Client and server both treat HSTORE as text (see the client dialect).
        kwargs["use_native_hstore"] = False
        # A startup option, not a SET: RESET ALL between leases keeps it.
        timeout_ms = int(config.statement_timeout_seconds * 1000)
        options = " ".join(
            filter(None, [url.query.get("options"), f"-c statement_timeout={timeout_ms}"])
        )
        # No driver-named prepared statements: psycopg would otherwise keep
        # "_pg3_N" statements on the pooled connection, and DISCARD ALL
        # between leases would leave its cache out of step with the server.
        kwargs["connect_args"] = {"options": options, "prepare_threshold": None}
    engine = sqlalchemy.create_engine(url, **kwargs)
    if sqlite_attach:
        _attach_on_connect(engine, sqlite_attach)
    if backend == "sqlite":
        _read_sqlite_state_on_connect(engine)
    # By driver family, not URL spelling: mariadb+pymysql:// is MySQL's too.
    if backend == "mysql":
        _mysql_statement_timeout(engine, config.statement_timeout_seconds)
    return engine


def _mysql_statement_timeout(engine: Engine, seconds: float) -> None:
    """Cap statement time on every MySQL/MariaDB connection the pool opens."""

    @event.listens_for(engine, "connect", insert=True)
    def cap(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(mysql_statement_timeout(dbapi_connection, seconds))
        finally:
            cursor.close()


def _read_sqlite_state_on_connect(engine: Engine) -> None:
    """Remember each new SQLite connection's session state; the reset restores it."""

    @event.listens_for(engine, "connect")
    def remember(dbapi_connection: Any, record: Any) -> None:
        record.info["sqlite_state"] = sqlite_state(dbapi_connection)


def _attach_on_connect(engine: Engine, schemas: dict[str, str]) -> None:
    for name in schemas:
        if not name.isidentifier():
            raise ValueError(f"SQLite schema name {name!r} is not an identifier")

    @event.listens_for(engine, "connect")
    def attach(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for name, path in schemas.items():
                cursor.execute("ATTACH DATABASE ? AS " + name, (path,))
        finally:
            cursor.close()
