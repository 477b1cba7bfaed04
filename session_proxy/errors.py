"""Exceptions of the session-proxy DBAPI shim.

The PEP 249 hierarchy (:class:`Error`, :class:`IntegrityError`, ...) is what
the shim raises for a database error reported by the server, with the
backend's message, ``args`` and code (``sqlstate`` for PostgreSQL, ``errno``
for MySQL, ``sqlite_errorcode``/``sqlite_errorname`` for SQLite).  SQLAlchemy
wraps them exactly as it wraps the real driver's exceptions, so application
code sees the same :class:`sqlalchemy.exc.IntegrityError` and friends in
direct and proxy mode.

Failures of the proxy itself derive from :class:`ProxyError` *and* from the
fitting PEP 249 class, so SQLAlchemy handles them (and invalidates pooled
connections on :class:`ServerUnreachable`) while callers can still tell them
apart: ``err.orig`` of the SQLAlchemy exception is one of these.
"""

from __future__ import annotations

from typing import Any

from .wire.errors import WireError


class Warning(Exception):  # noqa: A001 - PEP 249 name
    """PEP 249 ``Warning``."""


class Error(WireError):
    """PEP 249 ``Error``: base of every shim error.

    The server's context (``status``, ``txn``, ``step``, ``request_id``) is in
    the declared fields of :class:`~session_proxy.wire.errors.WireError`.
    """

    sqlstate: str | None = None
    errno: int | None = None
    sqlite_errorcode: int | None = None
    sqlite_errorname: str | None = None
    #: For a queued statement that failed: the exception SQLAlchemy would have
    #: raised running it (set by the connection, raised by
    #: :func:`session_proxy.pipeline.sqlalchemy_errors`).
    replacement: BaseException | None = None

    @property
    def pgcode(self) -> str | None:
        """psycopg2-style alias of :attr:`sqlstate`."""
        return self.sqlstate


class InterfaceError(Error):
    """PEP 249 ``InterfaceError``."""


class DatabaseError(Error):
    """PEP 249 ``DatabaseError``."""


class DataError(DatabaseError):
    """PEP 249 ``DataError``."""


class OperationalError(DatabaseError):
    """PEP 249 ``OperationalError``."""


class IntegrityError(DatabaseError):
    """PEP 249 ``IntegrityError``."""


class InternalError(DatabaseError):
    """PEP 249 ``InternalError``."""


class ProgrammingError(DatabaseError):
    """PEP 249 ``ProgrammingError``."""


class NotSupportedError(DatabaseError):
    """PEP 249 ``NotSupportedError``."""


DBAPI_CLASSES: dict[str, type[Error]] = {
    cls.__name__: cls
    for cls in (
        Error,
        InterfaceError,
        DatabaseError,
        DataError,
        OperationalError,
        IntegrityError,
        InternalError,
        ProgrammingError,
        NotSupportedError,
    )
}


class ProxyError(WireError):
    """Base of the errors that come from the proxy rather than the database."""

    code: str | None = "proxy_error"


class ServerUnreachable(ProxyError, OperationalError):
    """The proxy server could not be reached (refused, reset, DNS, TLS)."""

    code = "server_unreachable"


class ProxyTimeout(ProxyError, OperationalError):
    """The proxy server did not answer within the client's timeout."""

    code = "timeout"


class ProtocolMismatch(ProxyError, InterfaceError):
    """Client and server disagree on protocol version, backend or message shape."""

    code = "protocol_mismatch"


class TransactionExpired(ProxyError, OperationalError):
    """The server rolled the transaction back after its idle lease ran out."""

    code = "transaction_expired"


class TransactionLost(ProxyError, OperationalError):
    """The server no longer knows the transaction (restart, other instance)."""

    code = "unknown_transaction"


class SessionClosed(ProxyError, OperationalError):
    """The server session of this connection is gone (session pooling).

    The server closed it (idle too long, its database connection lost, a
    restart) or does not know it; the message says which.  Its temporary
    tables and settings are gone with it.  SQLAlchemy treats this as a
    disconnect: the pool discards the connection and opens a new one.
    """

    code = "session_closed"


class ServerBusy(ProxyError, OperationalError):
    """Nothing ran: the server is at a limit or shutting down; ``retry_after`` seconds.

    ``code`` names the limit: ``too_many_transactions``, ``too_many_sessions``,
    ``subject_limit``, ``server_busy`` (its threads are kept for open
    transactions' next requests) or ``shutting_down``.
    """

    code = "too_many_transactions"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthenticationFailed(ProxyError, OperationalError):
    """The server refused the client's bearer token; the message says why."""

    code = "unauthorized"


class AccessDenied(ProxyError, ProgrammingError):
    """The caller's role may not run that statement or operation.

    ``fingerprint`` is the refused statement's normalized form ("" for an
    operation), the string to add to a policy file to allow it.
    """

    code = "policy_violation"

    def __init__(self, message: str, fingerprint: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.reason = reason


class RequestRejected(ProxyError, ProgrammingError):
    """The server refused a request as malformed or over a limit."""

    code = "bad_request"


class RowcountMismatch(ProxyError, DatabaseError):
    """A pipelined rowcount check failed on the server.

    ``expected`` and ``actual`` are the sums over the check group; the
    proxy dialect turns this into the ``StaleDataError`` SQLAlchemy raises.
    """

    code = "rowcount_mismatch"

    def __init__(self, message: str, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class PipelineAborted(ProxyError, InternalError):
    """An earlier pipelined statement of this transaction failed.

    Statements queued after it never ran, so the transaction can only be
    rolled back; anything else raises this.
    """

    code = "pipeline_aborted"


def database_error(error: dict[str, Any], args: tuple) -> Error:
    """Rebuild the PEP 249 exception a server-side driver raised."""
    cls = DBAPI_CLASSES.get(error.get("dbapi_class", ""), DatabaseError)
    exc = cls(*args) if args else cls(error.get("message", ""))
    exc.sqlstate = error.get("sqlstate")
    exc.errno = error.get("errno")
    exc.sqlite_errorcode = error.get("sqlite_errorcode")
    exc.sqlite_errorname = error.get("sqlite_errorname")
    return exc


class RemoteOperationError(ProxyError):
    """A logical operation raised an exception of a class the caller can't rebuild.

    ``type_name`` is the original exception's ``module.QualName``.
    """

    code = "operation_error"

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.original_message = message


class UnknownOperation(ProxyError, LookupError):
    """The server exposes no operation of that name."""

    code = "unknown_operation"


class OperationRejected(ProxyError, TypeError):
    """The server refused a logical call's arguments."""

    code = "bad_arguments"
