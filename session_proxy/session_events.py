"""Pipelined flushes for every ORM ``Session`` on a proxy engine.

A plain :class:`sqlalchemy.orm.Session`, an application's own subclass and
:class:`~session_proxy.session.ProxySession` all get the same behaviour,
through SQLAlchemy's public events registered once on the ``Session`` class
(:func:`install`, called when a proxy engine is created):

- ``after_begin`` links each DBAPI shim connection to the session whose
  transaction uses it (until the connection's commit or rollback), so
  :mod:`session_proxy.pipeline` can tell a unit of work's statements
  (queued) from anything else (sent).  Sessions on other
  engines are recognised at once (their connections are not shim
  connections) and left alone.
- ``after_flush`` sends the flush's queued writes before the flush ends,
  except when a later request carries them: an autoflush (the statement
  that triggered it), an explicit flush with ``defer_flush_errors``, or the
  flush of a ``commit()``.  Inside a SAVEPOINT they always go out here.
- ``after_flush_postexec``, for the flush of a ``commit()``: the queued
  writes and the COMMIT go out together in one request *from inside the
  flush*, so a write that fails there fails the flush itself, and
  SQLAlchemy leaves the session as a failed flush does (rolled back,
  ``PendingRollbackError`` until ``rollback()``) and raises from
  ``commit()``.  The connection's own commit that follows costs nothing.
  This early commit is taken only when it is exactly what SQLAlchemy would
  do next: the session's root transaction, one connection which the session
  itself commits, no two-phase commit, no later ``after_flush_postexec``
  listener and nothing left to flush.  Otherwise the writes are sent before
  the flush ends (one more round trip, the same semantics).
- ``handle_error`` on each proxy engine (:func:`watch_engine`): a queued
  write that fails in front of a later statement (an autoflush's, or a
  deferred flush's) fails the session like a flush, raised from that
  statement.

The private SQLAlchemy names this needs are in
:mod:`session_proxy._sqlalchemy_private`.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import RootTransaction
from sqlalchemy.orm import Session

from . import _sqlalchemy_private as private
from . import dbapi as shim
from .pipeline import is_deferred_failure, sqlalchemy_errors

#: Session attribute: True between ``before_commit`` and the end of the commit.
COMMITTING = "_session_proxy_committing"
#: ``Session.info`` key (or engine option ``proxy_defer_flush_errors``): let
#: an explicit flush's writes wait for the next request too.
DEFER_FLUSH_ERRORS = "proxy_defer_flush_errors"

#: Who calls ``flush()`` for an autoflush, and for the flush of a commit.
AUTOFLUSH = "_autoflush"
COMMIT_FLUSH = "_prepare_impl"

_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Register the listeners on :class:`~sqlalchemy.orm.Session` (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        event.listen(Session, "after_begin", _after_begin)
        event.listen(Session, "before_commit", _before_commit)
        event.listen(Session, "after_commit", _commit_ends)
        event.listen(Session, "after_transaction_end", _transaction_ends)
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_flush_postexec", _after_flush_postexec)
        _installed = True


def watch_engine(engine: Any) -> None:
    """Fail a session like a flush when a queued write fails on ``engine`` later."""
    if not event.contains(engine, "handle_error", _late_failure):
        event.listen(engine, "handle_error", _late_failure)


# -- which connections, which session -------------------------------------------


def shim_connection(connection: Any) -> shim.Connection | None:
    """The DBAPI shim connection under a Core ``Connection``, or None."""
    if connection.closed or connection.invalidated:
        return None
    pooled = getattr(connection, "connection", None)
    dbapi_connection = getattr(pooled, "dbapi_connection", None)
    return dbapi_connection if isinstance(dbapi_connection, shim.Connection) else None


def proxy_connections(session: Session) -> list[shim.Connection]:
    """The shim connections of the session's open transactions."""
    found: dict[int, shim.Connection] = {}
    for transaction in private.transaction_chain(session):
        for connection in private.sqlalchemy_connections(transaction):
            dbapi_connection = shim_connection(connection)
            if dbapi_connection is not None:
                found[id(dbapi_connection)] = dbapi_connection
    return list(found.values())


def session_of(dbapi_connection: shim.Connection) -> Session | None:
    """The session whose transaction uses ``dbapi_connection``, if any."""
    ref = dbapi_connection.orm_session
    return ref() if ref is not None else None


def _after_begin(session: Session, transaction: Any, connection: Any) -> None:
    dbapi_connection = shim_connection(connection)
    if dbapi_connection is not None:
        dbapi_connection.orm_session = weakref.ref(session)


def _transaction_ends(session: Session, transaction: Any) -> None:
    # Not the inner transaction each flush opens and closes.
    if transaction.parent is None or transaction.nested:
        setattr(session, COMMITTING, False)


def _before_commit(session: Session) -> None:
    setattr(session, COMMITTING, True)


def _commit_ends(session: Session) -> None:
    setattr(session, COMMITTING, False)


# -- flushes ----------------------------------------------------------------------


def _committing(session: Session) -> bool:
    """Whether this flush is the one a root transaction's commit runs first."""
    return bool(getattr(session, COMMITTING, False)) and not session.in_nested_transaction()


def defers_flush_errors(session: Session, connections: list[Any]) -> bool:
    """Whether an explicit flush of ``session`` may leave its writes queued."""
    own = getattr(session, "defer_flush_errors", None)
    if own is not None:
        return bool(own)
    if session.info.get(DEFER_FLUSH_ERRORS):
        return True
    return any(getattr(c.dialect, "proxy_defer_flush_errors", False) for c in connections)


def _core_connections(session: Session) -> list[Any]:
    return [
        connection
        for transaction in private.transaction_chain(session)
        for connection in private.sqlalchemy_connections(transaction)
    ]


def _after_flush(session: Session, flush_context: Any) -> None:
    """Send a flush's queued writes before it ends, unless a later request carries them."""
    connections = proxy_connections(session)
    if not any(c.queued for c in connections):
        return
    caller = private.flush_caller(session)
    if session.in_nested_transaction():
        _send(connections)
    elif caller == COMMIT_FLUSH and _committing(session):
        return  # decided in after_flush_postexec, once every other listener ran
    elif caller == AUTOFLUSH or defers_flush_errors(session, _core_connections(session)):
        return
    else:
        _send(connections)


def _after_flush_postexec(session: Session, flush_context: Any) -> None:
    """For a commit's flush: COMMIT with the queued writes, inside the flush."""
    if not _committing(session):
        return
    connections = proxy_connections(session)
    if not any(c.queued for c in connections):
        return  # the commit sends what little is left
    if private.flush_caller(session) != COMMIT_FLUSH:
        return  # a flush a before_commit listener ran: after_flush decided
    commit_on = _early_commit_connection(session)
    if commit_on is None:
        _send(connections)
        return
    with sqlalchemy_errors():
        commit_on.commit()


def _early_commit_connection(session: Session) -> shim.Connection | None:
    """The one shim connection the coming commit would commit next, or None.

    None unless committing it now is exactly what SQLAlchemy does next: one
    connection, committed by this session (not joined to an outside
    transaction it must not commit), no savepoint open on it, no two-phase
    commit, no later ``after_flush_postexec`` listener that could dirty the
    session, and nothing left to flush.
    """
    transaction = private.open_transaction(session)
    if transaction is None or session.twophase:
        return None
    while transaction.parent is not None:
        transaction = transaction.parent
    entries = private.connection_entries(transaction)
    if len(entries) != 1:
        return None
    connection, core_transaction, should_commit = entries[0]
    if (
        not should_commit
        or not isinstance(core_transaction, RootTransaction)
        or not core_transaction.is_active
        or connection.in_nested_transaction()
        or connection.get_transaction() is not core_transaction
    ):
        return None
    listeners = list(session.dispatch.after_flush_postexec)
    if not listeners or listeners[-1] is not _after_flush_postexec:
        return None
    if session.new or session.deleted or session.dirty:
        return None
    return shim_connection(connection)


def _send(connections: list[shim.Connection]) -> None:
    for connection in connections:
        with sqlalchemy_errors():
            connection.send_queue()


# -- late failures -------------------------------------------------------------


def _late_failure(context: Any) -> None:
    """A queued write failed in front of a later statement: fail the session like a flush.

    Only outside a flush (a flush handles its own failure) and while the
    session's transaction is active; a failure at commit leaves the session
    where a failed commit does.
    """
    error = context.original_exception
    if not is_deferred_failure(error) or context.connection is None:
        return
    dbapi_connection = shim_connection(context.connection)
    session = session_of(dbapi_connection) if dbapi_connection is not None else None
    if session is None or private.is_flushing(session):
        return
    fail_like_flush(session, error)


def fail_like_flush(session: Session, error: BaseException) -> None:
    """Put the session where a failed flush leaves it (for a deferred failure)."""
    transaction = private.open_transaction(session)
    if (
        not is_deferred_failure(error)
        or private.is_flushing(session)
        or transaction is None
        or not transaction.is_active
    ):
        return
    try:
        private.roll_back_as_failed_flush(transaction)
    except sa_exc.IllegalStateChangeError:
        # Inside another transaction method (a SAVEPOINT being opened): the
        # error still propagates, and the connection refuses all but rollback.
        pass
