"""The MySQL and MariaDB backend, through PyMySQL.

Quirks it owns:

- the statement timeout is a session variable set when a connection opens
  (MariaDB's ``max_statement_time`` covers every statement, MySQL's
  ``max_execution_time`` read-only SELECTs) and again after each reset;
- between leases ``COM_RESET_CONNECTION`` (which PyMySQL has no public call
  for) clears the session, then the server's settings are put back;
- the watchdog stops a query with ``KILL QUERY`` from a connection of its own,
  and a query that ignored it with ``KILL CONNECTION``;
- the session's handler write counters say whether a transaction wrote;
- long results stream through PyMySQL's unbuffered ``SSCursor``, spilling to
  a temporary file when another statement needs the socket
  (:class:`session_proxy_server.cursors.SpillingCursor`);
- the outcome table's ``session_proxy`` database is one per database server,
  shared by the proxies of all its databases: records are scoped by the
  served database's name.

``mariadb+pymysql://`` and ``mysql+pymysql://`` are both served here: the
family is chosen by driver, not by the URL's spelling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

from ..cursors import ServerCursor, SpillingCursor
from .base import BackendDefaults, on_other_connection

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from ..config import ServerConfig

#: The session's counters of rows written, updated and deleted.
_WRITE_COUNTERS = (
    "SHOW SESSION STATUS WHERE Variable_name IN "
    "('Handler_write', 'Handler_update', 'Handler_delete')"
)

#: MySQL's COM_RESET_CONNECTION command (MySQL 5.7.3+, MariaDB 10.2.4+).
_COM_RESET_CONNECTION = 0x1F


def mysql_statement_timeout(dbapi_connection: Any, seconds: float) -> str:
    """The ``SET SESSION`` statement that caps statement time on this server.

    MariaDB's ``max_statement_time`` (seconds) covers every statement;
    MySQL's ``max_execution_time`` (milliseconds) covers read-only SELECTs.
    """
    if "mariadb" in dbapi_connection.get_server_info().lower():
        return f"SET SESSION max_statement_time = {float(seconds)!r}"
    return f"SET SESSION max_execution_time = {int(seconds * 1000)}"


class MySQLBackend(BackendDefaults):
    """MySQL and MariaDB through PyMySQL."""

    name = "mysql"
    dialect_names = ("mysql", "mariadb")
    driver = "pymysql"
    lexer_dialect = "mysql"
    streams_results = True
    outcome_table_shared = True
    alter_column_type = "ALTER TABLE {table} MODIFY {column} {type} NOT NULL"

    def on_engine(self, engine: Engine, config: ServerConfig) -> None:
        """Cap statement time on every connection the pool opens."""
        seconds = config.statement_timeout_seconds

        @event.listens_for(engine, "connect", insert=True)
        def cap(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(mysql_statement_timeout(dbapi_connection, seconds))
            finally:
                cursor.close()

    def handshake_charset(self, dbapi_connection: Any) -> str | None:
        return str(dbapi_connection.character_set_name())

    def transaction_wrote(self, dbapi_connection: Any) -> bool | None:
        """Whether the session's handler write counters moved.

        ``COM_RESET_CONNECTION`` sets them back to zero between leases;
        internal temporary tables count apart (``Handler_tmp_*``), a user
        temporary table counts as a write (one outcome recorded too many).
        Raises the driver's error if the question fails.
        """
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_WRITE_COUNTERS)
            return any(int(value) for _name, value in cursor.fetchall())
        finally:
            cursor.close()

    def reset_session(
        self, dbapi_connection: Any, statement_timeout: float, info: Mapping[str, Any]
    ) -> None:
        """COM_RESET_CONNECTION, then the session settings connections start with.

        The reset rolls back, drops temporary tables, user variables and
        prepared statements, releases GET_LOCK locks and restores the
        session variables and character set: autocommit is on again.
        """
        dbapi_connection._execute_command(_COM_RESET_CONNECTION, b"")
        dbapi_connection._read_ok_packet()
        setting = mysql_statement_timeout(dbapi_connection, statement_timeout)
        assert setting.startswith("SET ")
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET autocommit = 0, " + setting[len("SET "):])
        finally:
            cursor.close()

    def canceller(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        """``KILL QUERY`` sent on a short connection of its own."""
        thread_id = int(dbapi_connection.thread_id())
        return on_other_connection(kill_connect, f"KILL QUERY {thread_id}")

    def terminator(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        """``KILL CONNECTION`` sent on a short connection of its own."""
        thread_id = int(dbapi_connection.thread_id())
        return on_other_connection(kill_connect, f"KILL CONNECTION {thread_id}", commit=True)

    def open_stream(
        self, lease: Any, sql: str, params: Any, page_size: int
    ) -> tuple[Any, ServerCursor]:
        """Run ``sql`` on an unbuffered cursor; its rows stay on the socket."""
        import pymysql.cursors

        cursor = lease.dbapi_connection.cursor(pymysql.cursors.SSCursor)
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
        except BaseException:
            cursor.close()
            raise
        return cursor, SpillingCursor(cursor, [], page_size)

    def outcome_scope(self, connection: Connection) -> str:
        """The served database's name."""
        return connection.execute(sa.text("SELECT DATABASE()")).scalar() or ""


BACKEND = MySQLBackend()
