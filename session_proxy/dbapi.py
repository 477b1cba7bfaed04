"""A PEP 249 (DBAPI 2.0) module whose connections live on a session-proxy server.

SQLAlchemy drives this module exactly as it drives a real driver; the proxy
dialects (:mod:`session_proxy.dialects`) name it as their DBAPI.  A
:class:`Connection` holds no database connection of its own: the first
statement after a commit or rollback leases one on the server (the ``begin``
rides along in the same request), later statements reuse the lease, and
``commit()``/``rollback()`` end it.  With no lease open, ``rollback()`` and
``close()`` cost no round trip, so returning an idle connection to
SQLAlchemy's pool is free.

Rows come back one page at a time: the first page with the statement's
response, the rest from a server-side cursor as the application fetches.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from typing import Any

from . import protocol
from .codec import decode_row, from_wire, to_wire
from .errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    TransactionExpired,
    TransactionLost,
    Warning,
)
from .transport import HTTPTransport

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
    transport: HTTPTransport, backend: str | None = None, **_ignored: Any
) -> Connection:
    """Open a shim connection over ``transport``.

    ``backend`` is the dialect name the caller compiles for; if the server
    fronts a different backend this raises
    :class:`~session_proxy.errors.ProtocolMismatch` before any statement runs.
    """
    handshake = transport.handshake()
    if backend is not None and not protocol.same_backend(handshake.dialect, backend):
        from .errors import ProtocolMismatch

        raise ProtocolMismatch(
            f"engine compiles SQL for {backend!r} but the server at "
            f"{transport.base_url} fronts a {handshake.dialect!r} database"
        )
    return Connection(transport)


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


class Connection:
    """A PEP 249 connection backed by a server-held lease."""

    def __init__(self, transport: HTTPTransport) -> None:
        self.transport = transport
        self.handshake = transport.handshake()
        self.options: dict[str, Any] = {}
        self.closed = False
        self._txn: str | None = None
        self._generation = 0
        self._deferred: list[dict] = []

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
        """Roll back any open transaction and close; idempotent."""
        if self.closed:
            return
        try:
            self._finish(protocol.ROLLBACK)
        except Error:
            # The lease is gone or the server is unreachable; either way the
            # server rolls back on its own when the lease runs out.
            self._end_transaction()
        self.closed = True

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

    # -- internals -----------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise InterfaceError("session-proxy connection is closed")

    def _end_transaction(self) -> None:
        self._txn = None
        self._deferred.clear()
        self._generation += 1

    def _finish(self, op: str) -> None:
        if self._txn is None:
            self._deferred.clear()
            return
        try:
            self.request([{"op": op}])
        except (TransactionExpired, TransactionLost):
            if op == protocol.COMMIT:
                raise
            # Rolling back what the server already rolled back succeeds.
        except Error as exc:
            # A failed commit the server kept open must still be rolled back.
            if getattr(exc, "server_txn", None) is None:
                self._end_transaction()
            raise
        self._end_transaction()

    def defer(self, step: dict) -> None:
        """Queue a step that needs no answer to ride with the next request."""
        if self._txn is not None:
            self._deferred.append(step)

    def request(self, steps: list[dict]) -> list[dict]:
        """Send ``steps`` (plus deferred ones) and return their results."""
        self._check_open()
        prefix: list[dict] = []
        if self._txn is None:
            prefix.append({"op": protocol.BEGIN, "options": dict(self.options)})
        elif self._deferred:
            prefix.extend(self._deferred)
            self._deferred.clear()
        try:
            body = self.transport.pipeline(self._txn, prefix + steps)
        except (TransactionExpired, TransactionLost):
            self._end_transaction()
            raise
        except Error as exc:
            # A database error leaves the lease open (the server says which);
            # a rejected request leaves things as they were.
            txn = getattr(exc, "server_txn", None)
            if txn is not None:
                self._txn = txn
            raise
        self._txn = body.get("txn")
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(prefix) + len(steps):
            raise InterfaceError(
                f"server answered {len(results or [])} results for "
                f"{len(prefix) + len(steps)} steps"
            )
        return results[len(prefix) :]


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
        self.closed = False

    def execute(self, operation: str, parameters: Any = None) -> Cursor:
        """Run one statement on the server."""
        step = {"op": protocol.EXECUTE, "sql": operation, "params": _encode_params(parameters)}
        self._run(step)
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> int:
        """Run one statement once per parameter set, in one round trip."""
        step = {
            "op": protocol.EXECUTE_MANY,
            "sql": operation,
            "seq_of_params": [_encode_params(p) for p in seq_of_parameters],
        }
        self._run(step)
        return self.rowcount

    def _run(self, step: dict) -> None:
        self._check_open()
        self._release_server_cursor()
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
        self.rowcount = result.get("rowcount", -1)
        lastrowid = result.get("lastrowid")
        self.lastrowid = from_wire(lastrowid) if lastrowid is not None else None
        self._rows = [decode_row(row) for row in result.get("rows") or ()]
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
            [{"op": protocol.FETCH, "cursor": self._server_cursor, "n": n}]
        )
        self._rows = self._rows[self._pos :] + [
            decode_row(row) for row in result.get("rows") or ()
        ]
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
                self.connection.defer({"op": protocol.CLOSE, "cursor": self._server_cursor})
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
