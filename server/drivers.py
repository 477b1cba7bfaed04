"""What the server must know about each supported DBAPI driver.

The proxy dialects mimic exactly one driver per backend; the server refuses
to start with another.  This module adapts wire values to that driver's own
parameter objects and reads the error codes its exceptions carry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from session_proxy.codec import JSONParam
from session_proxy.protocol import DBAPI_ERROR_CLASSES

SUPPORTED_DRIVERS = {
    "sqlite": "pysqlite",
    "postgresql": "psycopg",
    "mysql": "pymysql",
    "mariadb": "pymysql",
}


#: The backend family each supported driver serves: decisions that differ by
#: backend are made by driver, never by the URL's spelling (``mariadb://``
#: and ``mysql://`` are the same family).
FAMILY = {"pysqlite": "sqlite", "psycopg": "postgresql", "pymysql": "mysql"}


def family(driver: str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql``: the backend family ``driver`` serves."""
    return FAMILY.get(driver, driver)


def check_supported(dialect_name: str, driver: str) -> None:
    """Raise ValueError unless the proxy has a client dialect for this driver."""
    wanted = SUPPORTED_DRIVERS.get(dialect_name)
    if wanted is None:
        raise ValueError(
            f"session-proxy does not support the {dialect_name!r} backend; "
            f"supported: {', '.join(sorted(SUPPORTED_DRIVERS))}"
        )
    if driver != wanted:
        raise ValueError(
            f"session-proxy serves {dialect_name} through the {wanted!r} driver, "
            f"not {driver!r}; use a {dialect_name}+{wanted}:// URL"
        )


def _psycopg_json(param: JSONParam) -> Any:
    from psycopg.types.json import Json, Jsonb

    wrapper = Jsonb if param.binary else Json
    return wrapper(param.text, dumps=_already_dumped)


def _already_dumped(text: str) -> str:
    return text


def prepare_cursor(cursor: Any, driver: str) -> Any:
    """Adjust a fresh driver cursor of the proxy executor; returns it.

    psycopg parses JSON/JSONB itself; the proxy's client parses them with
    the application's own ``json_deserializer``, so this cursor returns
    them as text.  The change is local to the cursor.
    """
    if driver == "psycopg":
        from psycopg.types.string import TextLoader

        for name in ("json", "jsonb"):
            cursor.adapters.register_loader(name, TextLoader)
    return cursor


#: What DISCARD ALL does, minus DEALLOCATE ALL: psycopg keeps its prepared
#: statements.  Sent in one simple-protocol query, one round trip.
PG_RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)


#: MySQL's COM_RESET_CONNECTION command (MySQL 5.7.3+, MariaDB 10.2.4+).
_COM_RESET_CONNECTION = 0x1F


def reset_session(dbapi_connection: Any, driver: str, statement_timeout: float) -> None:
    """Clear session state a client left on a connection before it is pooled again.

    Transactions are pooled: the next lease of this connection may serve
    another client, so settings (``SET search_path``, ``sql_mode``, a
    switched-off statement timeout), temporary tables, user variables,
    cursors, advisory locks and listeners must not carry over.  PostgreSQL
    runs :data:`PG_RESET`; MySQL and MariaDB get COM_RESET_CONNECTION (which
    pymysql has no public call for) and then the session settings the
    server's connections start with.  SQLite keeps no session state a client
    could change that matters here.
    """
    if driver == "psycopg":
        dbapi_connection.rollback()
        dbapi_connection.execute(PG_RESET)
        dbapi_connection.commit()
    elif driver == "pymysql":
        dbapi_connection.rollback()
        dbapi_connection._execute_command(_COM_RESET_CONNECTION, b"")
        dbapi_connection._read_ok_packet()
        dbapi_connection.autocommit(False)  # the reset restored the server default
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(mysql_statement_timeout(dbapi_connection, statement_timeout))
        finally:
            cursor.close()


def mysql_statement_timeout(dbapi_connection: Any, seconds: float) -> str:
    """The ``SET SESSION`` statement that caps statement time on this server.

    MariaDB's ``max_statement_time`` (seconds) covers every statement;
    MySQL's ``max_execution_time`` (milliseconds) covers read-only SELECTs.
    """
    if "mariadb" in dbapi_connection.get_server_info().lower():
        return f"SET SESSION max_statement_time = {float(seconds)!r}"
    return f"SET SESSION max_execution_time = {int(seconds * 1000)}"


@contextlib.contextmanager
def statement_deadline(dbapi_connection: Any, driver: str, seconds: float) -> Iterator[None]:
    """Interrupt SQLite work running longer than ``seconds``.

    SQLite calls the progress handler every few thousand virtual-machine
    steps; a true answer aborts the statement with ``OperationalError:
    interrupted``.  SQLite produces rows lazily, so the executor wraps
    every fetch in this too, not only ``execute``.  Other drivers rely on
    the database's own timeout (see :mod:`server.database`) and on the
    watchdog (:mod:`server.watchdog`), so this does nothing for them.
    """
    if driver != "pysqlite":
        yield
        return
    deadline = time.monotonic() + seconds
    dbapi_connection.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        yield
    finally:
        dbapi_connection.set_progress_handler(None, 0)


def adapt_value(value: Any) -> Any:
    """Turn a decoded wire value into what the driver expects."""
    if type(value) is JSONParam:
        return _psycopg_json(value)
    return value


def adapt_params(params: Any) -> Any:
    """Adapt one parameter set; lists become tuples for positional styles."""
    if params is None:
        return None
    if isinstance(params, dict):
        return {key: adapt_value(value) for key, value in params.items()}
    return tuple(adapt_value(value) for value in params)


def dbapi_class_name(exc: BaseException) -> str:
    """The PEP 249 class an exception belongs to (psycopg's UniqueViolation -> IntegrityError)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in DBAPI_ERROR_CLASSES:
            return cls.__name__
    return "DatabaseError"


def error_details(exc: BaseException) -> dict[str, Any]:
    """Backend codes of a driver exception: sqlstate, errno, sqlite codes."""
    details: dict[str, Any] = {}
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        details["sqlstate"] = sqlstate
    args = getattr(exc, "args", ())
    if args and type(args[0]) is int:
        details["errno"] = args[0]
    for name in ("sqlite_errorcode", "sqlite_errorname"):
        value = getattr(exc, name, None)
        if value is not None:
            details[name] = value
    return details


def transaction_failed(dbapi_connection: Any, driver: str) -> bool:
    """Whether the connection's transaction was aborted by an error (PostgreSQL).

    Such a transaction can only roll back; its ``COMMIT`` does that.
    """
    if driver == "psycopg":
        from psycopg.pq import TransactionStatus

        return dbapi_connection.info.transaction_status == TransactionStatus.INERROR
    if driver == "psycopg2":
        from psycopg2.extensions import TRANSACTION_STATUS_INERROR

        return dbapi_connection.get_transaction_status() == TRANSACTION_STATUS_INERROR
    return False
