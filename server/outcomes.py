"""The outcomes of finished requests, so a retry never runs anything twice.

A client names every request with an idempotency key and sends the same key
when it retries.  Two records answer a retry whose first attempt already
finished:

- **The outcome table** (``session_proxy_outcomes`` in the served
  database, in a schema of its own, ``session_proxy``, on PostgreSQL and
  MySQL, so reflecting the application's schema does not show it).  A
  commit, or a logical call, that may have written (:mod:`session_proxy_server.writes`)
  inserts its response under (scope, subject, key) *in the transaction it
  commits*, so the row exists if and only if the work committed.  The row
  also holds the caller's role and the digest of the request
  (:func:`request_digest`); a retry is answered from it only when subject,
  role and request all match, and anything else is 409
  ``idempotency_conflict``, having run nothing.  On MySQL the
  ``session_proxy`` database is shared by every database of the server, so
  ``scope`` names the served database and every lookup and purge filters
  on it.  A retry that finds the row gets
  that response back; any instance answers it, and so does a restarted one.
  The primary key also stops a duplicate attempt that races the first: its
  insert waits for the first to commit and then fails, and the duplicate is
  rolled back.  Rows older than the window are purged.
- **A memory of recent outcomes** on this instance: every request that
  ended a transaction (committed, rolled back, failed) and every logical
  call's answer, kept for the same window, so read-only work and failures
  replay too, without a database round trip.

Requests that leave a transaction open are remembered on their lease (see
:mod:`session_proxy_server.leases`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine

from . import backends

log = logging.getLogger("session_proxy.server")

TABLE_NAME = "session_proxy_outcomes"
#: Schema (PostgreSQL) or database (MySQL) the table goes in where the
#: backend has them and the server may create one.
SCHEMA = "session_proxy"

#: Outcomes kept in memory at most, oldest dropped first.
MEMORY_LIMIT = 50_000
#: Bytes of response bodies kept in memory at most, oldest dropped first.
MEMORY_BYTES = 64 * 1024 * 1024


#: Columns added since the first version of the table; an older table gets
#: them by ``ALTER TABLE ... ADD COLUMN`` when a server starts.
ADDED_COLUMNS = ("scope", "role", "request_digest")


def outcome_table(metadata: sa.MetaData, schema: str | None = None) -> sa.Table:
    """The outcome table's definition, in ``schema`` (None: the default one)."""
    return sa.Table(
        TABLE_NAME,
        metadata,
        # The served database where the table is shared (MySQL), else "".
        sa.Column("scope", sa.String(64), primary_key=True, server_default=""),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("idem_key", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(255), nullable=False, server_default=""),
        # SHA-256 (hex) of the request's method, path and body.
        sa.Column("request_digest", sa.String(64), nullable=False, server_default=""),
        # Seconds since the epoch: 8-byte floats (a 4-byte one, MySQL's
        # FLOAT, is 128 s coarse today, wider than the window).
        sa.Column("created", sa.Double(), nullable=False, index=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"),
                  nullable=False),
        schema=schema,
    )


def request_digest(method: str, path: str, body: bytes) -> str:
    """SHA-256 (hex) naming one request: a retry sends the very same bytes."""
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def outcome_scope(engine: Engine) -> str:
    """What the records of this server are scoped to.

    MySQL's ``session_proxy`` database is one per database server, shared
    by the proxies of all its databases: the scope is the served database's
    name.  PostgreSQL schemas and SQLite files belong to one database
    already: the scope is "".
    """
    if not backends.for_engine(engine).outcome_table_shared:
        return ""
    with engine.connect() as connection:
        return backends.for_engine(engine).outcome_scope(connection)


def upgrade_table(engine: Engine, table: sa.Table) -> list[str]:
    """Add the :data:`ADDED_COLUMNS` an older outcome table lacks; return their names.

    Rows recorded before the upgrade keep "" as role and digest, which no
    request matches: a retry of one is answered 409, never with another
    caller's answer.  On MySQL the primary key gains ``scope``.
    """
    _widen_created(engine, table)
    missing = _missing_columns(engine, table)
    if not missing:
        return []
    try:
        _add_columns(engine, table, missing)
    except sa.exc.SQLAlchemyError:
        # Another server starting at the same time may have added them.
        if _missing_columns(engine, table):
            raise
    log.warning("upgraded %s: added columns %s", TABLE_NAME, ", ".join(missing))
    return missing


def _widen_created(engine: Engine, table: sa.Table) -> None:
    """Give an older table's ``created`` column the declared 8-byte type.

    Earlier releases declared a float that MySQL stores in 4 bytes, which
    rounds today's time to 128 s and moved the window by up to a minute.
    """
    template = backends.for_engine(engine).alter_column_type
    if template is None:
        return
    dialect = engine.dialect
    column = table.c.created
    wanted = column.type.compile(dialect)
    for reflected in sa.inspect(engine).get_columns(table.name, table.schema):
        if reflected["name"] == column.name and reflected["type"].compile(dialect) != wanted:
            preparer = dialect.identifier_preparer
            with engine.begin() as connection:
                connection.execute(sa.text(template.format(
                    table=preparer.format_table(table),
                    column=preparer.quote(column.name),
                    type=wanted,
                )))
            log.warning("upgraded %s: %s is now %s", TABLE_NAME, column.name, wanted)


def _missing_columns(engine: Engine, table: sa.Table) -> list[str]:
    inspector = sa.inspect(engine)
    present = {column["name"] for column in inspector.get_columns(table.name, table.schema)}
    return [name for name in ADDED_COLUMNS if name not in present]


def _add_columns(engine: Engine, table: sa.Table, missing: list[str]) -> None:
    dialect = engine.dialect
    preparer = dialect.identifier_preparer
    qualified = preparer.format_table(table)
    with engine.begin() as connection:
        for name in missing:
            column = table.c[name]
            connection.execute(sa.text(
                f"ALTER TABLE {qualified} ADD COLUMN {preparer.quote(name)} "
                f"{column.type.compile(dialect)} NOT NULL DEFAULT ''"
            ))
        if "scope" in missing and backends.for_engine(engine).outcome_table_shared:
            connection.execute(sa.text(
                f"ALTER TABLE {qualified} DROP PRIMARY KEY, "
                "ADD PRIMARY KEY (scope, subject, idem_key)"
            ))


def outcome_schema(engine: Engine) -> str | None:
    """Create :data:`SCHEMA` if the backend has schemas; None where it cannot.

    SQLite has none: its backend attaches a database file of its own as
    the schema where commits stay atomic, else the table lives beside the
    application's.  A server without the privilege to create a schema logs
    why and uses the default one.
    """
    backend = backends.for_engine(engine)
    if not backend.outcome_in_schema:
        return backend.outcome_attached_schema(engine)
    try:
        with engine.begin() as connection:
            connection.execute(sa.schema.CreateSchema(SCHEMA, if_not_exists=True))
    except sa.exc.SQLAlchemyError as exc:
        log.warning(
            "cannot create schema %s for the outcome table (%s); using the default schema",
            SCHEMA, exc.__class__.__name__,
        )
        return None
    return SCHEMA


class Outcome:
    """A finished request's HTTP status and encoded JSON body.

    ``role`` and ``digest`` name the caller's role and the request
    (:func:`request_digest`) that produced it.
    """

    __slots__ = ("status", "body", "role", "digest")

    def __init__(self, status: int, body: bytes, role: str = "", digest: str = "") -> None:
        self.status = status
        self.body = body
        self.role = role
        self.digest = digest

    def answers(self, role: str, digest: str) -> bool:
        """Whether this is the outcome of the request ``digest`` sent by ``role``."""
        return bool(self.digest) and self.role == role and self.digest == digest


class OutcomeConflict(Exception):
    """A key names an outcome of another request or role: 409, nothing runs."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key} already names another request (a different "
            "role or different request body); a retry must resend the same "
            "request with the same credentials.  This request was not run (or, "
            "where it had begun, it was rolled back)"
        )


def replayable(outcome: Outcome | None, key: str, role: str, digest: str) -> Outcome | None:
    """``outcome`` if it answers this request; raises :class:`OutcomeConflict` if another's."""
    if outcome is None:
        return None
    if not outcome.answers(role, digest):
        raise OutcomeConflict(key)
    return outcome


#: The columns :func:`_row` fills.
_ROW_COLUMNS = (
    "scope", "subject", "idem_key", "role", "request_digest", "created", "status", "body",
)


def _row(scope: str, subject: str, key: str, outcome: Outcome) -> dict[str, Any]:
    """The outcome table row recording ``outcome`` for (scope, subject, key), made now."""
    return {
        "scope": scope,
        "subject": subject,
        "idem_key": key,
        "role": outcome.role,
        "request_digest": outcome.digest,
        "created": time.time(),
        "status": outcome.status,
        "body": outcome.body.decode("utf-8"),
    }


class OutcomeStore:
    """Records outcomes in the database and in memory; looks them up.

    :param engine: the server's engine; the table is created if missing.
    :param window_seconds: how long an outcome is kept.
    :param memory_bytes: response bytes the memory keeps at most; the oldest
        go first, and an answer larger than this is not kept in memory at
        all.  A commit's record in the database answers its retry anyway.
    """

    def __init__(
        self, engine: Engine, window_seconds: float, memory_bytes: int = MEMORY_BYTES
    ) -> None:
        self.engine = engine
        # Lookups and purges must not wait for the leases' pool, which can
        # be full of open transactions: they get connections of their own.
        self._own_engine = backends.for_engine(engine).side_engine(engine)
        self.window_seconds = window_seconds
        self.table = outcome_table(sa.MetaData(), outcome_schema(engine))
        self.table.create(engine, checkfirst=True)
        upgrade_table(engine, self.table)
        #: The served database on MySQL (see :func:`outcome_scope`), else "".
        self.scope = outcome_scope(engine)
        dialect = engine.dialect
        self._insert = self.table.insert().compile(dialect=dialect)
        self._insert_sql = str(self._insert)
        #: The record insert that only inserts when a condition holds.
        self._conditional: dict[str, tuple[Any, str]] = {}
        self._memory: OrderedDict[tuple[str, str], tuple[float, Outcome]] = OrderedDict()
        self.memory_bytes = memory_bytes
        #: Bytes of the response bodies in :attr:`_memory` right now.
        self.held_bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.replays = 0

    def ensure_table(self) -> None:
        """Create the outcome table again if it has gone; never raises."""
        try:
            self.table.create(self._own_engine, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not create %s: %s", TABLE_NAME, exc)

    # -- recording ----------------------------------------------------------------

    def record_on(self, dbapi_connection: Any, subject: str, key: str, outcome: Outcome) -> None:
        """Insert ``outcome`` on a driver connection, inside its open transaction.

        Raises the driver's ``IntegrityError`` when the key is recorded
        already (a duplicate attempt raced the first and lost).
        """
        compiled = self._insert
        params: Any = compiled.construct_params(_row(self.scope, subject, key, outcome))
        if compiled.positional:
            params = [params[name] for name in compiled.positiontup]
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(self._insert_sql, params)
        finally:
            cursor.close()

    def record_and_commit(
        self,
        dbapi_connection: Any,
        subject: str,
        key: str,
        outcome: Outcome,
        run: Callable[[Any, str, Any], None],
        condition: str | None = None,
    ) -> None:
        """Insert ``outcome`` and commit, through ``run(connection, sql, params)``.

        With ``condition`` (SQL) the row is inserted only when it holds
        (whether the transaction wrote, asked in the same statement).
        ``run`` is the backend's :meth:`record_and_commit`.  Raises the
        driver's ``IntegrityError`` when the key is recorded already.
        """
        compiled, sql = self._insert, self._insert_sql
        if condition is not None:
            compiled, sql = self._conditional_insert(condition)
        params: Any = compiled.construct_params(_row(self.scope, subject, key, outcome))
        if compiled.positional:
            params = [params[name] for name in compiled.positiontup]
        run(dbapi_connection, sql, params)

    def _conditional_insert(self, condition: str) -> tuple[Any, str]:
        """``INSERT ... SELECT <row> WHERE condition``, compiled once."""
        if condition not in self._conditional:
            columns = [column for column in self.table.columns if column.name in _ROW_COLUMNS]
            row = sa.select(*[sa.bindparam(c.name, type_=c.type) for c in columns])
            insert = self.table.insert().from_select(columns, row.where(sa.text(condition)))
            compiled = insert.compile(dialect=self.engine.dialect)
            self._conditional[condition] = (compiled, str(compiled))
        return self._conditional[condition]

    def record_in_session(self, session: Any, subject: str, key: str, outcome: Outcome) -> None:
        """Insert ``outcome`` through an ORM session, inside its transaction."""
        session.execute(self.table.insert().values(_row(self.scope, subject, key, outcome)))

    def remember(self, subject: str, key: str, outcome: Outcome) -> None:
        """Keep ``outcome`` in this instance's memory for the window."""
        now = time.monotonic()
        with self._lock:
            old = self._memory.pop((subject, key), None)
            if old is not None:
                self.held_bytes -= len(old[1].body)
            if len(outcome.body) > self.memory_bytes:
                return
            self._memory[(subject, key)] = (now + self.window_seconds, outcome)
            self.held_bytes += len(outcome.body)
            while len(self._memory) > MEMORY_LIMIT or self.held_bytes > self.memory_bytes:
                self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Drop the oldest remembered outcome; the caller holds the lock."""
        _, (_, outcome) = self._memory.popitem(last=False)
        self.held_bytes -= len(outcome.body)

    # -- looking up -----------------------------------------------------------------

    def recall(self, subject: str, key: str) -> Outcome | None:
        """The outcome this instance remembers for (subject, key), if any."""
        with self._lock:
            entry = self._memory.get((subject, key))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def find(self, subject: str, key: str) -> Outcome | None:
        """The outcome recorded for (subject, key), in memory or in the database.

        The caller checks it answers the request (:func:`replayable`).
        """
        outcome = self.recall(subject, key)
        if outcome is not None:
            return outcome
        table = self.table
        query = sa.select(
            table.c.status, table.c.body, table.c.role, table.c.request_digest
        ).where(
            table.c.scope == self.scope,
            table.c.subject == subject,
            table.c.idem_key == key,
            table.c.created >= time.time() - self.window_seconds,
        )
        with self._own_engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return Outcome(int(row.status), row.body.encode("utf-8"), row.role, row.request_digest)

    def replayed(self) -> None:
        """Count one response answered from a record."""
        with self._lock:
            self.replays += 1

    # -- purging --------------------------------------------------------------------

    def purge(self) -> int:
        """Forget outcomes older than the window; return how many rows went."""
        now = time.monotonic()
        with self._lock:
            while self._memory and next(iter(self._memory.values()))[0] < now:
                self._forget_oldest()
        table = self.table
        # Only this scope's rows: another database's proxy purges its own.
        old = sa.and_(
            table.c.scope == self.scope, table.c.created < time.time() - self.window_seconds
        )
        with self._own_engine.connect() as connection:
            # Look before deleting: no write lock when there is nothing to purge.
            if connection.execute(sa.select(table.c.idem_key).where(old).limit(1)).first() is None:
                return 0
            deleted = connection.execute(table.delete().where(old)).rowcount or 0
            connection.commit()
        return deleted

    def start_purger(self) -> None:
        """Purge every tenth of the window (at most every minute) in a daemon thread."""
        interval = min(self.window_seconds / 10, 60.0)

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.purge()
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("could not purge old outcomes: %s", exc.__class__.__name__)

        threading.Thread(target=loop, name="outcome-purger", daemon=True).start()

    def stop(self) -> None:
        """Stop the purger thread."""
        self._stop.set()
        self._own_engine.dispose()
