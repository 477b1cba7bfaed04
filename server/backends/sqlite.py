"""The SQLite backend (the standard library's ``sqlite3``, SQLAlchemy's pysqlite).

Quirks it owns:

- a database file several connections can open (no ``:memory:``), pooled
  with a ``QueuePool`` and ``check_same_thread=False``;
- no statement timeout in the database: :meth:`SQLiteBackend.statement_deadline`
  interrupts work through the progress handler, and the watchdog calls
  ``interrupt()``;
- no schemas: the outcome table lives in a database file of its own,
  ``<database>.session_proxy``, attached as ``session_proxy`` on every
  connection, so the application's reflection (``sqlite_master`` of
  ``main``) never shows it.  A transaction that writes both files commits
  them atomically through SQLite's super-journal, which holds in the
  rollback-journal modes; in WAL mode it does not (SQLite commits each
  file atomically, not the set), so a database already in WAL mode keeps
  the outcome table beside the application's tables, as before.  While the
  outcome file is attached, SQLite's own authorizer refuses any change of
  journal mode (``PRAGMA journal_mode = WAL``, however spelled), which
  would silently end that atomicity: put a database in WAL mode before the
  server starts;
- a reader's COMMIT only releases a SHARED lock: it is sent without waiting
  at any isolation level (:meth:`SQLiteBackend.reader_commit_is_safe`);
- the session state a client can change (temporary objects, attached
  databases, the pragmas of :data:`session_proxy_server.sql.session_guard.RESET_PRAGMAS`) is
  read when a connection opens and put back between leases.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import event

from ..sql.session_guard import RESET_PRAGMAS
from .base import BackendDefaults

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

    from ..config import ServerConfig

#: Where :meth:`SQLiteBackend.on_engine` keeps a connection's starting state.
STATE_INFO_KEY = "sqlite_state"

#: The name the outcome database is attached as (the outcome module's schema).
OUTCOME_SCHEMA = "session_proxy"
#: Appended to the served file's path to name the outcome database.
OUTCOME_FILE_SUFFIX = ".session_proxy"

log = logging.getLogger("session_proxy.server")

#: Engine -> the outcome database file its connections attach.
_outcome_files: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def outcome_database_file(url: URL) -> str | None:
    """The outcome database beside the file ``url`` serves; None where it cannot be atomic.

    None for a database in WAL mode (commits are atomic per file only) and
    for URI file names, whose options the outcome file could not share.
    """
    if url.query.get("uri") or not url.database or url.database.startswith("file:"):
        return None
    with contextlib.closing(sqlite3.connect(url.database)) as probe:
        mode = str(probe.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    if mode == "wal":
        log.warning(
            "%s is in WAL mode, where a commit is atomic per file only: the outcome "
            "table stays in it (and shows in its reflection)", url.database,
        )
        return None
    return url.database + OUTCOME_FILE_SUFFIX


def keep_journal_mode(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    """SQLite authorizer: deny setting ``journal_mode``, allow everything else.

    SQLite calls it while preparing each statement, with the pragma's name
    and value as it parsed them, so every spelling is seen.
    """
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() == "journal_mode" \
            and arg2 is not None:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _attach_outcome_file(engine: Engine, path: str) -> None:
    """Attach ``path`` as :data:`OUTCOME_SCHEMA` on every connection ``engine`` opens.

    Commits stay atomic across both files only outside WAL mode, so the
    journal mode may no longer change (:func:`keep_journal_mode`).
    """

    @event.listens_for(engine, "connect")
    def attach(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute(f"ATTACH DATABASE ? AS {OUTCOME_SCHEMA}", (path,))
        dbapi_connection.set_authorizer(keep_journal_mode)

    _outcome_files[engine] = path

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


def _restore(dbapi_connection: Any, baseline: tuple[Any, ...]) -> None:
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


class SQLiteBackend(BackendDefaults):
    """SQLite through ``sqlite3``."""

    name = "sqlite"
    dialect_names = ("sqlite",)
    driver = "pysqlite"
    lexer_dialect = "sqlite"
    outcome_in_schema = False

    def engine_kwargs(self, url: URL, config: ServerConfig) -> dict[str, Any]:
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            raise ValueError(
                "session-proxy needs a SQLite database file that several "
                "connections can open; an in-memory database is not supported"
            )
        return {
            "poolclass": sqlalchemy.pool.QueuePool,
            "connect_args": {"check_same_thread": False},
        }

    def on_engine(self, engine: Engine, config: ServerConfig) -> None:
        """Attach the outcome database, then remember each new connection's
        session state (attachments included); the reset restores it."""
        path = outcome_database_file(engine.url)
        if path is not None:
            _attach_outcome_file(engine, path)

        @event.listens_for(engine, "connect")
        def remember(dbapi_connection: Any, record: Any) -> None:
            record.info[STATE_INFO_KEY] = sqlite_state(dbapi_connection)

    def outcome_attached_schema(self, engine: Engine) -> str | None:
        return OUTCOME_SCHEMA if engine in _outcome_files else None

    def side_engine(self, engine: Engine) -> Engine:
        side = super().side_engine(engine)
        path = _outcome_files.get(engine)
        if path is not None:
            _attach_outcome_file(side, path)
        return side

    def reader_commit_is_safe(self, isolation_level: str | None) -> bool:
        """Always: a reader's COMMIT only releases its SHARED lock, and cannot fail."""
        return True

    def attach_databases(self, engine: Engine, schemas: Mapping[str, str]) -> None:
        """Attach ``schemas`` (name -> file) on every connection the pool opens."""
        for name in schemas:
            if not name.isidentifier():
                raise ValueError(f"SQLite schema name {name!r} is not an identifier")
            if name.lower() == OUTCOME_SCHEMA:
                raise ValueError(f"SQLite schema name {name!r} is the outcome table's")

        @event.listens_for(engine, "connect")
        def attach(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                for name, path in schemas.items():
                    cursor.execute("ATTACH DATABASE ? AS " + name, (path,))
            finally:
                cursor.close()

    def reset_session(
        self, dbapi_connection: Any, statement_timeout: float, info: Mapping[str, Any]
    ) -> None:
        """Drop temporary objects and put the pragmas back to the starting state.

        Statements that change anything else are refused before they run
        (see :mod:`session_proxy_server.sql.session_guard`).
        """
        dbapi_connection.rollback()
        baseline = info.get(STATE_INFO_KEY)
        if baseline is None:
            raise RuntimeError("no SQLite session state was read when the connection opened")
        _restore(dbapi_connection, baseline)

    @contextlib.contextmanager
    def statement_deadline(self, dbapi_connection: Any, seconds: float) -> Iterator[None]:
        """Interrupt SQLite work running longer than ``seconds``.

        SQLite calls the progress handler every few thousand virtual-machine
        steps; a true answer aborts the statement with ``OperationalError:
        interrupted``.  SQLite produces rows lazily, so the executor wraps
        every fetch in this too, not only ``execute``.
        """
        deadline = time.monotonic() + seconds
        dbapi_connection.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            yield
        finally:
            dbapi_connection.set_progress_handler(None, 0)

    def canceller(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        return dbapi_connection.interrupt

    def terminator(
        self, dbapi_connection: Any, kill_connect: Callable[[], Any]
    ) -> Callable[[], None]:
        """Interrupt again: an SQLite connection has no session to end."""
        return dbapi_connection.interrupt


BACKEND = SQLiteBackend()
