"""The PostgreSQL backend, through psycopg 3.

Quirks it owns:

- ``statement_timeout`` as a connection startup option (``-c``), which
  ``DISCARD ALL`` between leases keeps; no driver-named prepared statements
  (``prepare_threshold=None``), since ``DISCARD ALL`` would leave psycopg's
  cache out of step; HSTORE read as text, as the client dialect does;
- JSON/JSONB parameters bound with psycopg's ``Json``/``Jsonb`` from the
  text the client encoded, and JSON results returned as text;
- a failed statement aborts the transaction; the database says whether a
  transaction wrote (``txid_current_if_assigned()``), in the very statement
  that records a commit's outcome, sent with the ``COMMIT`` and the session
  reset (:data:`PG_RESET_STEPS`) as one simple query: one round trip, as a
  direct ``COMMIT``;
- long results read through ``DECLARE ... CURSOR`` portals
  (:class:`session_proxy_server.cursors.Portals`);
- the watchdog cancels with ``connection.cancel()``, and ends a session
  that ignored the cancel with ``pg_terminate_backend``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from session_proxy.wire.codec import JSONParam

from ..cursors import Portals, ServerCursor
from .base import BackendDefaults, on_other_connection

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from ..config import ServerConfig

#: Everything a PostgreSQL session keeps: prepared statements, temporary
#: tables, views and functions, settings (back to the connection's startup
#: options, so the statement timeout stays), SET ROLE and SET SESSION
#: AUTHORIZATION, advisory locks, LISTEN, cursors WITH HOLD, sequence
#: state and cached plans.  It cannot run inside a transaction block.
PG_RESET = "DISCARD ALL"


#: :data:`PG_RESET` statement by statement, each allowed in a transaction
#: block, unlike ``DISCARD ALL`` itself: what follows the ``COMMIT`` in the
#: one query of :meth:`PostgreSQLBackend.record_and_commit`, which runs them
#: in a transaction of their own after the commit (after any deferred
#: trigger too), in the commit's round trip.  About 15 µs of database time
#: here, against 25 µs and a round trip for ``DISCARD ALL`` on its own.
PG_RESET_STEPS = (
    "CLOSE ALL",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "DEALLOCATE ALL",
    "SELECT pg_catalog.pg_advisory_unlock_all()",
    "UNLISTEN *",
    "DISCARD PLANS",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
)


def _already_dumped(text: str) -> str:
    return text


class PostgreSQLBackend(BackendDefaults):
    """PostgreSQL through psycopg 3."""

    name = "postgresql"
    dialect_names = ("postgresql",)
    driver = "psycopg"
    lexer_dialect = "postgresql"
    aborts_on_error = True
    streams_results = True
    wrote_condition = "txid_current_if_assigned() IS NOT NULL"
    alter_column_type = "ALTER TABLE {table} ALTER COLUMN {column} TYPE {type}"

    def engine_kwargs(self, url: URL, config: ServerConfig) -> dict[str, Any]:
        timeout_ms = int(config.statement_timeout_seconds * 1000)
        # A startup option, not a SET: the reset between leases keeps it.
        options = " ".join(
            filter(None, [url.query.get("options"), f"-c statement_timeout={timeout_ms}"])
        )
        return {
            # Client and server both treat HSTORE as text (see the client dialect).
            "use_native_hstore": False,
            "connect_args": {"options": options, "prepare_threshold": None},
        }

    def adapt_value(self, value: Any) -> Any:
        if type(value) is JSONParam:
            from psycopg.types.json import Json, Jsonb

            wrapper = Jsonb if value.binary else Json
            return wrapper(value.text, dumps=_already_dumped)
        return value

    def prepare_cursor(self, cursor: Any) -> Any:
        """Return JSON/JSONB as text: the client parses them with its own deserializer."""
        from psycopg.types.string import TextLoader

        for name in ("json", "jsonb"):
            cursor.adapters.register_loader(name, TextLoader)
        return cursor

    def transaction_failed(self, dbapi_connection: Any) -> bool:
        """Whether an error aborted the transaction; its ``COMMIT`` then rolls back."""
        from psycopg.pq import TransactionStatus

        return bool(dbapi_connection.info.transaction_status == TransactionStatus.INERROR)

    def transaction_wrote(self, dbapi_connection: Any) -> bool | None:
        """Whether the transaction has an id: it wrote or locked a row.

        A view or a row-level security policy can call a writing function
        that no statement text shows.  Raises the driver's error if the
        question fails.
        """
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT txid_current_if_assigned()")
            return cursor.fetchone()[0] is not None
        finally:
            cursor.close()

    def record_and_commit(
        self, dbapi_connection: Any, insert_sql: str | None, params: Any, reset: bool = True
    ) -> None:
        """``[insert_sql;] COMMIT; <PG_RESET_STEPS>`` as one simple query: one round trip.

        Without ``reset`` (a session held under session pooling) the query
        stops at the ``COMMIT``.

        The parameters are bound client-side (psycopg's ``ClientCursor``),
        since the extended protocol takes one statement per message.  A
        failed insert stops the query before its ``COMMIT``: the
        transaction is then aborted, as after any failed statement.  After
        it returns, the session is as a fresh connection's.
        """
        from psycopg import ClientCursor

        statements = [insert_sql] if insert_sql else []
        statements += ["COMMIT", *(PG_RESET_STEPS if reset else ())]
        cursor = ClientCursor(dbapi_connection)
        try:
            cursor.execute("; ".join(statements), params)
        finally:
            cursor.close()

    def reset_session(
        self, dbapi_connection: Any, statement_timeout: float, info: Mapping[str, Any]
    ) -> None:
        """Run :data:`PG_RESET` (one round trip) outside a transaction."""
        dbapi_connection.rollback()  # no round trip when no transaction is open
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.execute(PG_RESET)
        finally:
            dbapi_connection.autocommit = False

    def canceller(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        """A cancel request on a connection of its own."""
        return dbapi_connection.cancel

    def terminator(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        """``pg_terminate_backend`` from a connection of its own."""
        pid = int(dbapi_connection.info.backend_pid)
        return on_other_connection(
            kill_connect, f"SELECT pg_terminate_backend({pid})", commit=True
        )

    def open_stream(
        self, lease: Any, sql: str, params: Any, page_size: int
    ) -> tuple[Any, ServerCursor]:
        """Declare a portal for ``sql`` and read its first page, in one round trip."""
        connection = lease.dbapi_connection
        portals = lease.portals
        if portals is None:
            portals = lease.portals = Portals()
        cursor = self.prepare_cursor(connection.cursor())
        try:
            cursor, rows, name = portals.open(connection, cursor, sql, params, page_size + 1)
        except BaseException:
            cursor.close()
            raise

        def finished(name: str = name) -> None:
            portals.finished(name)

        # Fewer rows than asked for: the portal is at its end already.
        exhausted = len(rows) < page_size + 1
        return cursor, ServerCursor(
            cursor, rows, portals.fetcher(cursor, name), on_close=finished, exhausted=exhausted
        )


BACKEND = PostgreSQLBackend()
