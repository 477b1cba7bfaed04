"""What the server must know about each supported DBAPI driver.

The proxy dialects mimic exactly one driver per backend; the server refuses
to start with another.  This module adapts wire values to that driver's own
parameter objects and reads the error codes its exceptions carry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from session_proxy.wire.codec import JSONParam
from session_proxy.wire.protocol import DBAPI_ERROR_CLASSES

from .sql.session_guard import RESET_PRAGMAS

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


#: A query answering whether the open transaction wrote, however its text
#: looked (a view or policy can call a writing function), and how to read
#: its rows.  PostgreSQL: a transaction that wrote or locked a row has a
#: transaction id.  MySQL/MariaDB: the session's handler write counters,
#: which COM_RESET_CONNECTION sets back to zero between leases (internal
#: temporary tables count apart, as Handler_tmp_*; a user temporary table
#: counts as a write, which only records one outcome too many).
WRITE_PROBES: dict[str, tuple[str, Callable[[list[Any]], bool]]] = {
    "postgresql": (
        "SELECT txid_current_if_assigned()",
        lambda rows: rows[0][0] is not None,
    ),
    "mysql": (
        "SHOW SESSION STATUS WHERE Variable_name IN "
        "('Handler_write', 'Handler_update', 'Handler_delete')",
        lambda rows: any(int(value) for _name, value in rows),
    ),
}


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


#: Everything a PostgreSQL session keeps: prepared statements, temporary
#: tables, views and functions, settings (back to the connection's startup
#: options, so the statement timeout stays), SET ROLE and SET SESSION
#: AUTHORIZATION, advisory locks, LISTEN, cursors WITH HOLD, sequence
#: state and cached plans.  It cannot run inside a transaction block.
PG_RESET = "DISCARD ALL"

#: MySQL's COM_RESET_CONNECTION command (MySQL 5.7.3+, MariaDB 10.2.4+).
_COM_RESET_CONNECTION = 0x1F

#: What a SQLite connection's session state is read back as: temporary
#: objects, attached databases (``temp`` appears once used, and stays) and
#: the pragmas a client may set.  One query.
SQLITE_STATE = (
    "SELECT (SELECT count(*) FROM temp.sqlite_master), "
    "(SELECT group_concat(name || '=' || file, char(10)) FROM pragma_database_list "
    "WHERE name <> 'temp'), "
    + ", ".join(f"(SELECT * FROM pragma_{name})" for name in RESET_PRAGMAS)
)


def sqlite_state(dbapi_connection: Any) -> tuple[Any, ...]:
    """The session state of a SQLite connection (see :data:`SQLITE_STATE`)."""
    return tuple(dbapi_connection.execute(SQLITE_STATE).fetchone())


def _reset_sqlite(dbapi_connection: Any, baseline: tuple[Any, ...]) -> None:
    """Drop temporary objects and put the pragmas back; raise if anything stays."""
    state = sqlite_state(dbapi_connection)
    if state == baseline:
        return
    # Pragmas first: query_only would refuse the drops.
    for name, now, then in zip(RESET_PRAGMAS, state[2:], baseline[2:], strict=True):
        if now != then:
            dbapi_connection.execute(f"PRAGMA {name} = {int(then)}")
    if state[0]:
        objects = dbapi_connection.execute(
            "SELECT type, name FROM temp.sqlite_master WHERE type IN ('trigger', 'view', 'table')"
        ).fetchall()
        order = {"trigger": 0, "view": 1, "table": 2}
        for kind, name in sorted(objects, key=lambda item: order[item[0]]):
            quoted = '"' + name.replace('"', '""') + '"'
            dbapi_connection.execute(f"DROP {kind.upper()} IF EXISTS temp.{quoted}")
    dbapi_connection.commit()
    state = sqlite_state(dbapi_connection)
    if state != baseline:
        raise RuntimeError(f"SQLite session state not restored: {state!r} != {baseline!r}")


def reset_session(
    dbapi_connection: Any,
    driver: str,
    statement_timeout: float,
    baseline: tuple[Any, ...] | None = None,
) -> None:
    """Clear session state a client left on a connection before it is pooled again.

    Transactions are pooled: the next lease of this connection may serve
    another client, so nothing the last one created or changed may stay.
    PostgreSQL runs :data:`PG_RESET` (one round trip) outside a transaction.
    MySQL and MariaDB get COM_RESET_CONNECTION (which pymysql has no public
    call for; it rolls back, drops temporary tables, user variables and
    prepared statements, releases GET_LOCK locks and restores the session
    variables and character set) and then, in one statement, the session
    settings the server's connections start with.  SQLite drops every
    temporary object and puts the pragmas of
    :data:`~server.session_guard.RESET_PRAGMAS` back to ``baseline``, what
    :func:`sqlite_state` read when the connection opened (statements that
    change anything else are refused, see :mod:`server.session_guard`).
    Raises when the state cannot be restored: the caller then discards the
    connection.
    """
    if driver == "psycopg":
        dbapi_connection.rollback()  # no round trip when no transaction is open
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.execute(PG_RESET)
        finally:
            dbapi_connection.autocommit = False
    elif driver == "pymysql":
        dbapi_connection._execute_command(_COM_RESET_CONNECTION, b"")
        dbapi_connection._read_ok_packet()
        # The reset restored the server defaults, autocommit on among them.
        setting = mysql_statement_timeout(dbapi_connection, statement_timeout)
        assert setting.startswith("SET ")
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET autocommit = 0, " + setting[len("SET "):])
        finally:
            cursor.close()
    elif driver == "pysqlite":
        dbapi_connection.rollback()
        if baseline is None:
            raise RuntimeError("no SQLite session state was read when the connection opened")
        _reset_sqlite(dbapi_connection, baseline)


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
