"""What "a backend" is to the server: the :class:`Backend` protocol.

Everything the server does differently for SQLite, PostgreSQL or MySQL goes
through one object of this type, chosen once from the engine's dialect
(:func:`session_proxy_server.backends.for_engine`); callers ask it and never branch on a
driver or dialect name.  The protocol is typed the way SQLAlchemy's
``ext/horizontal_shard.py`` types its plug points (``ShardChooser``,
``IdentityChooser``): a :class:`typing.Protocol` that a module implements,
checked by the type checker rather than by inheritance.

:class:`BackendDefaults` holds what the three built-in backends share
(PEP 249 error mapping, plain cursors, no statement deadline of the
server's own); a backend module subclasses it and overrides what differs.

When not to use this: client-side behaviour of a backend lives in the
client dialect (``session_proxy/dialects/``), and the SQL text checks
(``server/sql/text_guard.py``, ``server/sql/session_guard.py``) take the
lexer dialect name :attr:`Backend.lexer_dialect`, not a profile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import sqlalchemy

from session_proxy.wire.protocol import DBAPI_ERROR_CLASSES

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.engine import URL, Connection, Engine

    from ..config import ServerConfig
    from ..cursors import ServerCursor

#: What a driver raises for parameters it cannot bind, before sending anything.
PARAMETER_ERRORS = (TypeError, ValueError, KeyError, IndexError, OverflowError)


class Backend(Protocol):
    """One database backend served through exactly one DBAPI driver."""

    #: The backend family: ``sqlite``, ``postgresql`` or ``mysql``.
    name: str
    #: SQLAlchemy dialect names this profile serves (``mysql`` and ``mariadb``).
    dialect_names: tuple[str, ...]
    #: The one DBAPI driver served (what the client dialect mimics).
    driver: str
    #: The dialect name the SQL lexer and guards read statements as.
    lexer_dialect: str
    #: Whether a failed statement aborts the whole transaction (PostgreSQL).
    aborts_on_error: bool
    #: Whether long results are read through server-side cursors.
    streams_results: bool
    #: Whether the outcome table goes in a schema of its own (created with
    #: ``CREATE SCHEMA``; SQLite attaches a database file instead, see
    #: :meth:`outcome_attached_schema`).
    outcome_in_schema: bool
    #: Whether the outcome table is shared by every database of the server
    #: (MySQL: one ``session_proxy`` database), so records carry a scope.
    outcome_table_shared: bool
    #: SQL true when the open transaction wrote, for a record made in the
    #: same round trip as the commit and the session reset
    #: (:meth:`record_and_commit`); ``None``: the backend records, commits
    #: and resets in round trips of their own.
    wrote_condition: str | None
    #: How to change a column's type in place, with ``{table}``,
    #: ``{column}`` and ``{type}`` to fill in; ``None`` where declared types
    #: do not bind storage (SQLite keeps every REAL in 8 bytes).
    alter_column_type: str | None

    # -- engine -----------------------------------------------------------------

    def engine_kwargs(self, url: URL, config: ServerConfig) -> dict[str, Any]:
        """Keyword arguments of ``create_engine`` beyond the pool settings."""
        ...

    def on_engine(self, engine: Engine, config: ServerConfig) -> None:
        """Connect-time setup: statement timeout, session-state baseline."""
        ...

    def outcome_attached_schema(self, engine: Engine) -> str | None:
        """The attached schema holding the outcome table, where there is one."""
        ...

    def side_engine(self, engine: Engine) -> Engine:
        """An unpooled engine on the same database, seeing the same outcome table."""
        ...

    def attach_databases(self, engine: Engine, schemas: Mapping[str, str]) -> None:
        """Attach database files as schemas on every connection (SQLite only)."""
        ...

    # -- driver quirks ------------------------------------------------------------

    def adapt_params(self, params: Any) -> Any:
        """One decoded parameter set as this driver binds it."""
        ...

    def prepare_cursor(self, cursor: Any) -> Any:
        """Adjust a fresh driver cursor of the executor; return it."""
        ...

    def dbapi_class_name(self, exc: BaseException) -> str:
        """The PEP 249 class a driver exception belongs to."""
        ...

    def error_details(self, exc: BaseException) -> dict[str, Any]:
        """Backend error codes a driver exception carries (sqlstate, errno...)."""
        ...

    def transaction_failed(self, dbapi_connection: Any) -> bool:
        """Whether an error aborted the connection's transaction."""
        ...

    def transaction_wrote(self, dbapi_connection: Any) -> bool | None:
        """Whether the database says the transaction wrote; None: it cannot say."""
        ...

    def handshake_charset(self, dbapi_connection: Any) -> str | None:
        """The connection character set the client must know, if any."""
        ...

    def record_and_commit(
        self, dbapi_connection: Any, insert_sql: str | None, params: Any, reset: bool = True
    ) -> None:
        """Run ``insert_sql`` (if any) with ``params``, COMMIT and reset the session.

        One round trip; afterwards the session holds nothing of the
        transaction.  Without ``reset`` (a held session, under session
        pooling) the session is left as the commit leaves it.  Raises the
        driver's error of the insert or of the commit; only called when
        :attr:`wrote_condition` is set.
        """
        ...

    def reader_commit_is_safe(self, isolation_level: str | None) -> bool:
        """Whether a transaction that only read can be committed with nobody waiting.

        False where the COMMIT of a reader may fail in a way its client must
        hear of (a serialization failure under ``SERIALIZABLE`` means what
        it read was not consistent).
        """
        ...

    # -- between leases -----------------------------------------------------------

    def reset_session(
        self, dbapi_connection: Any, statement_timeout: float, info: Mapping[str, Any]
    ) -> None:
        """Clear the session state a client left; raise if it cannot be.

        ``info`` is the pooled connection's ``info`` dictionary, where
        :meth:`on_engine` may have kept what the connection started with.
        """
        ...

    # -- statement timeout ----------------------------------------------------------

    def statement_deadline(
        self, dbapi_connection: Any, seconds: float
    ) -> AbstractContextManager[None]:
        """Interrupt work under it running longer than ``seconds`` (SQLite)."""
        ...

    def canceller(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        """A function the watchdog calls to cancel what the connection runs."""
        ...

    def terminator(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        """A function ending the connection's session from the database side.

        The watchdog's escalation for a statement that ignored the cancel
        :meth:`canceller` gives (a procedure catching the interruption).
        """
        ...

    # -- results ------------------------------------------------------------------

    def open_stream(
        self, lease: Any, sql: str, params: Any, page_size: int
    ) -> tuple[Any, ServerCursor]:
        """Run a query through a server-side cursor: (driver cursor, its reader).

        Raises what the driver raises; :data:`PARAMETER_ERRORS` for
        parameters it cannot bind.  Only called when :attr:`streams_results`.
        """
        ...

    # -- outcome table ----------------------------------------------------------------

    def outcome_scope(self, connection: Connection) -> str:
        """What this server's outcome records are scoped to ("" if not shared)."""
        ...


def on_other_connection(
    kill_connect: Callable[[], Any], statement: str, commit: bool = False
) -> Callable[[], None]:
    """A function running ``statement`` on a short connection of its own.

    ``kill_connect`` opens a new driver connection to the same server: how
    the watchdog stops a session that is busy running something else.
    """

    def run() -> None:
        other = kill_connect()
        try:
            cursor = other.cursor()
            cursor.execute(statement)
            cursor.close()
            if commit:
                other.commit()
        finally:
            other.close()

    return run


class BackendDefaults:
    """What the built-in backends share; a backend module overrides the rest."""

    name: ClassVar[str] = ""
    dialect_names: ClassVar[tuple[str, ...]] = ()
    driver: ClassVar[str] = ""
    lexer_dialect: ClassVar[str] = ""
    aborts_on_error: ClassVar[bool] = False
    streams_results: ClassVar[bool] = False
    outcome_in_schema: ClassVar[bool] = True
    outcome_table_shared: ClassVar[bool] = False
    wrote_condition: ClassVar[str | None] = None
    alter_column_type: ClassVar[str | None] = None

    def engine_kwargs(self, url: URL, config: ServerConfig) -> dict[str, Any]:
        return {}

    def on_engine(self, engine: Engine, config: ServerConfig) -> None:
        return None

    def outcome_attached_schema(self, engine: Engine) -> str | None:
        return None

    def side_engine(self, engine: Engine) -> Engine:
        return sqlalchemy.create_engine(engine.url, poolclass=sqlalchemy.pool.NullPool)

    def attach_databases(self, engine: Engine, schemas: Mapping[str, str]) -> None:
        raise ValueError("--sqlite-attach applies to SQLite databases only")

    def adapt_value(self, value: Any) -> Any:
        """One decoded wire value as the driver binds it."""
        return value

    def adapt_params(self, params: Any) -> Any:
        """Adapt one parameter set; lists become tuples for positional styles."""
        if params is None:
            return None
        if isinstance(params, dict):
            return {key: self.adapt_value(value) for key, value in params.items()}
        return tuple(self.adapt_value(value) for value in params)

    def prepare_cursor(self, cursor: Any) -> Any:
        return cursor

    def dbapi_class_name(self, exc: BaseException) -> str:
        """The PEP 249 class (psycopg's UniqueViolation -> IntegrityError)."""
        for cls in type(exc).__mro__:
            if cls.__name__ in DBAPI_ERROR_CLASSES:
                return cls.__name__
        return "DatabaseError"

    def error_details(self, exc: BaseException) -> dict[str, Any]:
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

    def transaction_failed(self, dbapi_connection: Any) -> bool:
        return False

    def transaction_wrote(self, dbapi_connection: Any) -> bool | None:
        return None

    def handshake_charset(self, dbapi_connection: Any) -> str | None:
        return None

    def record_and_commit(
        self, dbapi_connection: Any, insert_sql: str | None, params: Any, reset: bool = True
    ) -> None:
        raise NotImplementedError(f"the {self.name} backend records and commits apart")

    def reader_commit_is_safe(self, isolation_level: str | None) -> bool:
        return isolation_level is not None and isolation_level.upper() != "SERIALIZABLE"

    def reset_session(
        self, dbapi_connection: Any, statement_timeout: float, info: Mapping[str, Any]
    ) -> None:
        dbapi_connection.rollback()

    @contextlib.contextmanager
    def statement_deadline(self, dbapi_connection: Any, seconds: float) -> Iterator[None]:
        """Nothing: the database's own timeout and the watchdog stop statements."""
        yield

    def canceller(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        return lambda: None

    def terminator(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        return lambda: None

    def open_stream(
        self, lease: Any, sql: str, params: Any, page_size: int
    ) -> tuple[Any, ServerCursor]:
        raise NotImplementedError(f"the {self.name} backend reads no server-side cursors")

    def outcome_scope(self, connection: Connection) -> str:
        return ""
