"""A PEP 249 (DBAPI 2.0) module whose connections live on a session-proxy server.

SQLAlchemy drives this module exactly as it drives a real driver; the proxy
dialects (:mod:`session_proxy.dialects`) name it as their DBAPI.  A
:class:`Connection` holds no database connection of its own: the first
statement after a commit or rollback leases one on the server (the ``begin``
rides along in the same request), later statements reuse the lease, and
``commit()``/``rollback()`` end it.  With no lease open, ``rollback()`` and
``close()`` cost no round trip, so returning an idle connection to
SQLAlchemy's pool is free.  When the server said the transaction has only
read and locked nothing, ``commit()`` and ``rollback()`` send its end
without waiting for the answer (:mod:`session_proxy.background`).

Rows come back one page at a time: the first page with the statement's
response, the rest from a server-side cursor as the application fetches.

Requests are sent again, under the same idempotency key, when the
connection drops before an answer or the server asks for a retry (see
:mod:`session_proxy.retry`); the server never runs a key twice, so this holds
inside a transaction too.  A transaction's follow-up requests go to the
server instance that opened it, when the server names one (``base_url``).

With ``pooling="session"`` (URL option ``pooling=session``) a connection
opens a server session when it is made (:mod:`session_proxy.held_sessions`):
the server holds one database connection for it until :meth:`Connection.close`,
and every transaction of the connection runs there, so temporary tables and
``SET``s persist across transactions as on a direct connection.  Its
connect-time statements are then not recorded: they persist by themselves.

Statements whose results nobody needs yet can be *queued* instead of sent
(:meth:`Cursor.defer`): they ride in front of the next request, which is
the next statement that needs a result, a fetch, or the commit.  If a
queued statement fails, the request stops there and the error names it;
the statements queued after it never ran, so the connection refuses
everything but ``rollback()`` from then on (:class:`PipelineAborted`).
``rollback()`` drops the queue unsent.
"""

from __future__ import annotations

import dataclasses
import datetime
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import background, held_sessions
from .errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PipelineAborted,
    ProgrammingError,
    SessionClosed,
    TransactionExpired,
    TransactionLost,
    Warning,
)
from .session_statements import is_session_statement
from .transport import HTTPTransport
from .wire import protocol
from .wire.codec import decode_rows, from_wire, to_wire
from .wire.messages import (
    Begin,
    Close,
    Commit,
    Execute,
    ExecuteMany,
    Fetch,
    PipelineReply,
    Rollback,
    SessionGrant,
    Step,
)

__all__ = [
    "BINARY",
    "Binary",
    "DATETIME",
    "Date",
    "DateFromTicks",
    "NUMBER",
    "ROWID",
    "STRING",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Connection",
    "Cursor",
    "DatabaseError",
    "DataError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]

# PEP 249 constructors and type objects.  Values are sent as themselves;
# the codec carries their types.
Binary = bytes
Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime


def DateFromTicks(ticks: float) -> datetime.date:  # noqa: N802 - PEP 249 name
    """PEP 249 ``DateFromTicks``."""
    return datetime.date.fromtimestamp(ticks)


def TimeFromTicks(ticks: float) -> datetime.time:  # noqa: N802 - PEP 249 name
    """PEP 249 ``TimeFromTicks``."""
    return datetime.datetime.fromtimestamp(ticks).time()


def TimestampFromTicks(ticks: float) -> datetime.datetime:  # noqa: N802 - PEP 249 name
    """PEP 249 ``TimestampFromTicks``."""
    return datetime.datetime.fromtimestamp(ticks)


class _TypeObject(frozenset):
    def __eq__(self, other: object) -> bool:
        return other in self if not isinstance(other, frozenset) else super().__eq__(other)

    __hash__ = frozenset.__hash__


STRING = _TypeObject({"STRING"})
BINARY = _TypeObject({"BINARY"})
NUMBER = _TypeObject({"NUMBER"})
DATETIME = _TypeObject({"DATETIME"})
ROWID = _TypeObject({"ROWID"})

apilevel = "2.0"
threadsafety = 1
# The real paramstyle is the server driver's; the proxy dialects pass it to
# SQLAlchemy explicitly, this is only the module-level PEP 249 attribute.
paramstyle = "qmark"


def connect(
    transport: HTTPTransport,
    backend: str | None = None,
    pooling: str = "transaction",
    **_ignored: Any,
) -> Connection:
    """Open a shim connection over ``transport``.

    ``backend`` is the dialect name the caller compiles for; if the server
    fronts a different backend this raises
    :class:`~session_proxy.errors.ProtocolMismatch` before any statement runs.
    ``pooling="session"`` holds a server database connection for this
    connection (one request now); a server that does not allow it answers
    400, raised as :class:`~session_proxy.errors.RequestRejected`.
    """
    check_backend(transport, backend)
    return Connection(transport, pooling)


def check_backend(transport: HTTPTransport, backend: str | None) -> None:
    """Raise :class:`~session_proxy.errors.ProtocolMismatch` unless the server
    fronts ``backend`` (nothing sent but the cached handshake)."""
    handshake = transport.handshake()
    if backend is not None and not protocol.same_backend(handshake.dialect, backend):
        from .errors import ProtocolMismatch

        raise ProtocolMismatch(
            f"engine compiles SQL for {backend!r} but the server at "
            f"{transport.base_url} fronts a {handshake.dialect!r} database"
        )


def _encode_params(params: Any) -> Any:
    if params is None:
        return None
    if isinstance(params, dict):
        return {key: to_wire(value) for key, value in params.items()}
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        return [to_wire(value) for value in params]
    raise ProgrammingError(
        f"statement parameters must be a sequence or a mapping, not "
        f"{type(params).__name__}"
    )


def _statement_step(
    operation: str, parameters: Any, many: bool, expect_rowcount: int | None = None
) -> Execute | ExecuteMany:
    """The ``execute`` or ``execute_many`` step of one statement."""
    if many:
        return ExecuteMany(
            operation, [_encode_params(p) for p in parameters], expect_rowcount
        )
    return Execute(operation, _encode_params(parameters), expect_rowcount)


class Queued:
    """One step waiting to ride with the next request.

    :param step: the protocol step.
    :param cursor: the cursor whose statement this is, to receive its result.
    :param check_key: steps with equal keys queued one after another form one
        rowcount check group on the server (see :mod:`session_proxy.wire.protocol`).
    :param on_failure: builds the exception to raise when this step fails,
        from the one the server reported (e.g. a ``StaleDataError``).
    :param on_result: called with the step's result once it has run.
    """

    __slots__ = ("step", "cursor", "check_key", "on_failure", "on_result")

    def __init__(
        self,
        step: Step,
        cursor: Cursor | None = None,
        check_key: Any = None,
        on_failure: Callable[[Exception], BaseException] | None = None,
        on_result: Callable[[dict], None] | None = None,
    ) -> None:
        self.step = step
        self.cursor = cursor
        self.check_key = check_key
        self.on_failure = on_failure
        self.on_result = on_result


#: Queued parameter sets after which the queue is sent on its own, so one
#: request stays well under the server's body limit.
MAX_QUEUED_ROWS = 20_000


class Connection:
    """A PEP 249 connection backed by a server-held lease."""

    def __init__(self, transport: HTTPTransport, pooling: str = "transaction") -> None:
        self.transport = transport
        self.handshake = transport.handshake()
        self.options: dict[str, Any] = {}
        self.closed = False
        self._txn: str | None = None
        #: The server instance holding the lease, when the server named one.
        self._base_url: str | None = None
        self._generation = 0
        self._queue: list[Queued] = []
        self._queued_rows = 0
        self._check_group = 0
        self._aborted: BaseException | None = None
        #: The server said the open transaction has only read, locking nothing.
        self._read_only = False
        #: End such transactions without waiting (:mod:`session_proxy.background`).
        self.end_reads_in_background = True
        #: Set once the previous transaction's background end was answered.
        self._ending: Any = None
        #: The ORM session whose transaction uses this connection (a weak
        #: reference; set by :mod:`session_proxy.session_events`), or None.
        self.orm_session: Any = None
        #: Session statements of the connect phase, re-run at each lease's start.
        self.session_statements: list[str] = []
        self._connecting = True
        #: The server session this connection holds (session pooling), or None.
        self.session: SessionGrant | None = None
        if pooling == "session":
            self.session = transport.open_session()
            held_sessions.track(self)
            # The held connection keeps them: nothing to replay at each begin.
            self._connecting = False

    # -- PEP 249 -----------------------------------------------------------

    def cursor(self) -> Cursor:
        """A new cursor on this connection."""
        self._check_open()
        return Cursor(self)

    def commit(self) -> None:
        """Commit the server-side transaction, if one is open."""
        self._check_open()
        self._finish(protocol.COMMIT)

    def rollback(self) -> None:
        """Roll back the server-side transaction, if one is open."""
        self._check_open()
        self._finish(protocol.ROLLBACK)

    def close(self) -> None:
        """Roll back any open transaction and close; idempotent.

        Waits for the answer to this connection's last background end
        (:mod:`session_proxy.background`), so an engine's ``dispose()``
        leaves no transaction of its own open on the server.
        """
        if self.closed:
            return
        self._wait_for_ending()
        try:
            if self.session is not None and self._txn is not None:
                # Closing the session rolls its transaction back: one request.
                self._drop_queue()
                self._end_transaction()
            else:
                self._finish(protocol.ROLLBACK)
        except Error:
            # The lease is gone or the server is unreachable; either way the
            # server rolls back on its own when the lease runs out.
            self._end_transaction()
        try:
            self.release_session()
        except Error:
            pass  # gone already, or unreachable: the server's idle timeout closes it
        self.closed = True

    def release_session(self, retry: bool = True) -> None:
        """Give the server session back (its open transaction rolls back)."""
        grant, self.session = self.session, None
        if grant is None:
            return
        held_sessions.forget(self)
        self.transport.close_session(grant, retry=retry)

    # -- session-proxy extras ------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        """Whether a server-side lease is open."""
        return self._txn is not None

    @property
    def transaction_id(self) -> str | None:
        """The server's id of the open lease, or None."""
        return self._txn

    def set_option(self, name: str, value: Any) -> None:
        """Set a connection option sent with the next ``begin``.

        ``name`` is one of ``isolation_level``, ``read_only``, ``deferrable``;
        ``None`` restores the server's default.
        """
        if name not in protocol.CONNECTION_OPTIONS:
            raise ProgrammingError(f"unknown connection option {name!r}")
        if value is None:
            self.options.pop(name, None)
        else:
            self.options[name] = value

    @property
    def autocommit(self) -> bool:
        """psycopg-style switch: True runs each statement in its own transaction."""
        return self.options.get("isolation_level") == "AUTOCOMMIT"

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if self._txn is not None:
            if not self.autocommit:
                raise ProgrammingError("can't change autocommit inside a transaction")
            # Statements already ran in autocommit: end their lease first.
            self._finish(protocol.ROLLBACK)
        self.set_option("isolation_level", "AUTOCOMMIT" if value else None)

    def character_set_name(self) -> str | None:
        """The server connection's character set (MySQL dialect support)."""
        return self.handshake.charset

    def end_connect_phase(self) -> None:
        """Stop recording session statements (the pool calls this at checkout)."""
        self._connecting = False

    def _note_statement(self, operation: str, parameters: Any) -> None:
        """Record a session statement the server just ran, while connecting."""
        if (
            self._connecting
            and not parameters
            and operation not in self.session_statements
            and is_session_statement(operation)
        ):
            kept = [*self.session_statements, operation]
            size = sum(len(sql.encode("utf-8", "surrogatepass")) for sql in kept)
            if len(kept) > protocol.MAX_SESSION_STATEMENTS or size > protocol.MAX_SESSION_BYTES:
                warnings.warn(
                    f"session-proxy keeps at most {protocol.MAX_SESSION_STATEMENTS} connect-time "
                    f"session statements ({protocol.MAX_SESSION_BYTES} bytes); {operation[:80]!r} "
                    "lasts only its own transaction",
                    stacklevel=3,
                )
                return
            self.session_statements = kept

    # -- internals -----------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise InterfaceError("session-proxy connection is closed")

    @property
    def queued(self) -> int:
        """How many steps wait to ride with the next request."""
        return len(self._queue)

    def _end_transaction(self) -> None:
        self._read_only = False
        self._txn = None
        self._base_url = None
        self._drop_queue()
        self._aborted = None
        self._generation += 1

    def _drop_queue(self) -> None:
        for queued in self._queue:
            if queued.cursor is not None:
                queued.cursor._pending = False
        self._queue.clear()
        self._queued_rows = 0

    def _finish(self, op: str) -> None:
        self.orm_session = None
        if op == protocol.ROLLBACK:
            # Queued statements are rolled back unsent.
            self._drop_queue()
            self._aborted = None
        else:
            self._check_not_aborted()
        if self._txn is None and not self._queue:
            self._generation += 1
            return
        if self._end_in_background(op):
            return
        try:
            self.request([Commit() if op == protocol.COMMIT else Rollback()])
        except (TransactionExpired, TransactionLost):
            if op == protocol.COMMIT:
                raise
            # Rolling back what the server already rolled back succeeds.
        except Error as exc:
            # A failed commit the server kept open must still be rolled back.
            if exc.txn is None:
                self._end_transaction()
            raise
        self._end_transaction()

    def _end_in_background(self, op: str) -> bool:
        """End a transaction that only read without waiting; whether it did.

        Only when the server said it read and locked nothing and nothing
        but cursor closes waits in the queue: its COMMIT or ROLLBACK cannot
        fail in a way that matters here (:mod:`session_proxy.background`).
        """
        if (
            not self._read_only
            or not self.end_reads_in_background
            or self._txn is None
            or any(queued.cursor is not None for queued in self._queue)
            or not background.SENDER.available()
        ):
            return False
        steps = [queued.step for queued in self._queue]
        steps.append(Commit() if op == protocol.COMMIT else Rollback())
        self._ending = background.SENDER.submit(self.transport, self._txn, self._base_url, steps)
        self._end_transaction()
        return True

    def _wait_for_ending(self) -> None:
        """Before opening a lease: let this connection's previous one end first."""
        ending, self._ending = self._ending, None
        if ending is not None and not ending.is_set():
            ending.wait(getattr(self.transport, "timeout", None))

    def queue(self, queued: Queued) -> None:
        """Queue a step to ride in front of the next request.

        A step with a ``check_key`` joins the rowcount check group of the step
        queued just before it when their keys are equal.
        """
        self._check_open()
        self._check_not_aborted()
        step = queued.step
        if queued.check_key is not None:
            previous = self._queue[-1] if self._queue else None
            if previous is None or previous.check_key != queued.check_key:
                self._check_group += 1
            step = queued.step = dataclasses.replace(step, check_group=self._check_group)
        self._queue.append(queued)
        self._queued_rows += (
            len(step.seq_of_params) or 1 if isinstance(step, ExecuteMany) else 1
        )
        if self._queued_rows >= MAX_QUEUED_ROWS:
            self.send_queue()

    def discard_queue(self) -> None:
        """Drop the queue unsent and forget a failed one.

        For ``ROLLBACK TO SAVEPOINT``: queued statements are always newer than
        the newest savepoint (a savepoint statement sends the queue), so
        rolling back to any savepoint undoes them anyway.
        """
        self._drop_queue()
        self._aborted = None

    def defer(self, step: Step) -> None:
        """Queue a step that needs no answer (a cursor close) if a lease is open."""
        if self._txn is not None:
            self._queue.append(Queued(step))

    def send_queue(self) -> None:
        """Send the queued steps now, in a request of their own."""
        if self._queue:
            self.request([])

    def _check_not_aborted(self) -> None:
        if self._aborted is not None:
            raise PipelineAborted(
                f"an earlier pipelined statement of this transaction failed "
                f"({self._aborted}); statements queued after it never ran, so "
                "the transaction must be rolled back"
            )

    def request(self, steps: list[Step]) -> list[dict]:
        """Send the queue, then ``steps``, in one request; return the steps' results."""
        self._check_open()
        self._check_not_aborted()
        prefix: list[Step] = []
        if self._txn is None:
            if not steps and not any(q.cursor is not None for q in self._queue):
                # Only cursor closes of an ended transaction: nothing to send.
                self._drop_queue()
                return []
            self._wait_for_ending()
            prefix.append(Begin(dict(self.options), tuple(self.session_statements)))
        queued, self._queue = self._queue, []
        self._queued_rows = 0
        start = len(prefix)
        prefix.extend(q.step for q in queued)
        session = self.session
        try:
            body = self.transport.pipeline(
                self._txn,
                prefix + steps,
                self._base_url or (session.base_url if session is not None else None),
                session.session_id if session is not None else None,
            )
        except (TransactionExpired, TransactionLost, SessionClosed):
            self._end_transaction()
            raise
        except Error as exc:
            # A database error leaves the lease open (the server says which);
            # a rejected request leaves things as they were.
            self._read_only = False
            txn = exc.txn
            if txn is not None:
                self._txn = txn
            self._failed_request(exc, queued, start)
            raise
        reply = PipelineReply.from_json(body)
        self._txn = reply.txn
        if self._txn is None:
            self._base_url = None
        elif reply.base_url is not None:
            self._base_url = reply.base_url
        self._read_only = bool(reply.read_only) and self._txn is not None
        results = reply.results
        if not isinstance(results, list) or len(results) != len(prefix) + len(steps):
            raise InterfaceError(
                f"server answered {len(results or [])} results for "
                f"{len(prefix) + len(steps)} steps"
            )
        for entry, result in zip(queued, results[start : len(prefix)], strict=True):
            self._deliver(entry, result)
        return results[len(prefix) :]

    @staticmethod
    def _deliver(entry: Queued, result: dict) -> None:
        if entry.cursor is not None:
            entry.cursor._settle(result)
        if entry.on_result is not None:
            entry.on_result(result)

    def _failed_request(self, exc: Error, queued: list[Queued], start: int) -> None:
        """Attribute a failure to the queued step it happened in, if any."""
        index = exc.step
        statements = [q for q in queued if q.cursor is not None]
        for entry in statements:
            entry.cursor._pending = False  # type: ignore[union-attr]
        if index is None:
            if not statements:
                return
            # A request refused as a whole: its queued statements never ran.
            failed: Queued | None = None
        elif start <= index < start + len(queued):
            failed = queued[index - start]
        else:
            return
        if failed is not None and failed.on_failure is not None:
            exc.replacement = failed.on_failure(exc)
        self._aborted = exc


class Cursor:
    """A PEP 249 cursor; rows past the first page are fetched on demand."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description: list[tuple] | None = None
        self.rowcount = -1
        self.lastrowid: Any = None
        self._rows: list[tuple] = []
        self._pos = 0
        self._server_cursor: str | None = None
        self._generation = connection._generation
        self._pending = False
        self._executions = 0
        self.closed = False

    def execute(self, operation: str, parameters: Any = None) -> Cursor:
        """Run one statement on the server."""
        self._run(_statement_step(operation, parameters, many=False))
        self.connection._note_statement(operation, parameters)
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> int:
        """Run one statement once per parameter set, in one round trip."""
        self._run(_statement_step(operation, seq_of_parameters, many=True))
        return self.rowcount

    def defer(
        self,
        operation: str,
        parameters: Any = None,
        *,
        many: bool = False,
        rowcount: int = -1,
        expect_rowcount: int | None = None,
        check_key: Any = None,
        on_failure: Callable[[Exception], BaseException] | None = None,
        on_result: Callable[[dict], None] | None = None,
    ) -> None:
        """Queue a statement that returns no rows instead of running it now.

        It runs in front of the connection's next request.  Until then the
        cursor reports ``rowcount`` (what the caller expects; ``-1`` for
        unknown) and :attr:`pending` is true; :meth:`resolve` sends the queue
        and loads the real rowcount.  With ``expect_rowcount`` the server
        checks the rowcount (summed over consecutive statements with an equal
        ``check_key``) and fails the request on a mismatch.
        """
        self._check_open()
        self._release_server_cursor()
        step = _statement_step(operation, parameters, many, expect_rowcount)
        self._executions += 1
        self.description = None
        self.rowcount = rowcount
        self.lastrowid = None
        self._rows, self._pos = [], 0
        self.connection.queue(
            Queued(
                step,
                self,
                check_key if expect_rowcount is not None else None,
                on_failure,
                on_result,
            )
        )
        self._pending = True
        self._queued_execution = self._executions
        self._generation = self.connection._generation

    @property
    def pending(self) -> bool:
        """Whether this cursor's statement is queued and has not run yet."""
        return self._pending

    def resolve(self) -> None:
        """Run this cursor's queued statement (and the queue before it) now."""
        if self._pending:
            self.connection.send_queue()

    def _settle(self, result: dict) -> None:
        """Take the result of this cursor's queued statement."""
        if self._pending and self._queued_execution == self._executions:
            self._pending = False
            self._take_counts(result)

    def _take_counts(self, result: dict) -> None:
        self.rowcount = result.get("rowcount", -1)
        lastrowid = result.get("lastrowid")
        self.lastrowid = from_wire(lastrowid) if lastrowid is not None else None

    def _run(self, step: Step) -> None:
        self._check_open()
        self._release_server_cursor()
        self._executions += 1
        self._pending = False
        (result,) = self.connection.request([step])
        self._generation = self.connection._generation
        self._load(result)

    def _load(self, result: dict) -> None:
        description = result.get("description")
        self.description = (
            [tuple(column) + (None,) * (7 - len(column)) for column in description]
            if description is not None
            else None
        )
        self._take_counts(result)
        self._rows = decode_rows(result.get("rows") or [], result.get("tagged"))
        self._pos = 0
        self._server_cursor = result.get("cursor")

    def _fetch_more(self, wanted: int) -> bool:
        """Pull the next page from the server; False when nothing is left."""
        if self._server_cursor is None:
            return False
        if self._generation != self.connection._generation:
            self._server_cursor = None
            raise InterfaceError(
                "the transaction of this cursor ended before all of its rows "
                "were fetched; fetch them before commit() or rollback()"
            )
        n = max(wanted, self.connection.handshake.page_size)
        (result,) = self.connection.request(
            [Fetch(self._server_cursor, n)]
        )
        self._rows = self._rows[self._pos :] + decode_rows(
            result.get("rows") or [], result.get("tagged")
        )
        self._pos = 0
        if result.get("done"):
            self._server_cursor = None
        return True

    def fetchone(self) -> tuple | None:
        """The next row, or None."""
        self._check_result()
        while self._pos >= len(self._rows):
            if not self._fetch_more(1):
                return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[tuple]:
        """Up to ``size`` (default :attr:`arraysize`) more rows."""
        self._check_result()
        size = self.arraysize if size is None else size
        while len(self._rows) - self._pos < size:
            if not self._fetch_more(size - (len(self._rows) - self._pos)):
                break
        rows = self._rows[self._pos : self._pos + size]
        self._pos += len(rows)
        return rows

    def fetchall(self) -> list[tuple]:
        """Every remaining row."""
        self._check_result()
        while self._fetch_more(self.connection.handshake.page_size):
            pass
        rows = self._rows[self._pos :]
        self._rows, self._pos = [], 0
        return rows

    def close(self) -> None:
        """Close the cursor; a server-side cursor is closed with the next request."""
        if not self.closed:
            self._release_server_cursor()
            self._rows = []
            self.closed = True

    def _release_server_cursor(self) -> None:
        if self._server_cursor is not None:
            if self._generation == self.connection._generation:
                self.connection.defer(Close(self._server_cursor))
            self._server_cursor = None

    def _check_open(self) -> None:
        if self.closed:
            raise InterfaceError("cursor is closed")
        self.connection._check_open()

    def _check_result(self) -> None:
        self._check_open()
        if self.description is None:
            raise ProgrammingError("the last statement returned no rows")

    def setinputsizes(self, sizes: Any) -> None:
        """PEP 249 no-op."""

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        """PEP 249 no-op."""

    def __iter__(self) -> Iterator[tuple]:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row
