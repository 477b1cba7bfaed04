"""``ProxySession``: the SQLAlchemy ``Session`` for proxy engines.

Use it wherever a ``Session`` is made::

    Session = sessionmaker(class_=ProxySession, bind=proxy_engine)

It behaves as a plain :class:`~sqlalchemy.orm.Session`: every statement,
including flushes, lazy loads and refreshes, goes through the proxy engine's
DBAPI shim.  It adds what only a session knows about:

- **Pipelined flushes.**  While it flushes, the unit of work's writes whose
  results nothing needs are queued (:mod:`session_proxy.pipeline`) and ride
  with the next statement that needs a result, or with the commit: adding
  any number of objects with known keys and committing is one round trip.
  Inside a SAVEPOINT the queue is sent before the flush ends, so nested
  transactions see their errors exactly where SQLAlchemy raises them.
  A queued write that fails later leaves the session as a failed flush
  does: rolled back, its objects restored, further use refused until
  ``rollback()``; the error raised is SQLAlchemy's for that statement.
- The counters of the engines it is bound to, :attr:`ProxySession.proxy_stats`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from . import _sqlalchemy_private as private
from . import dbapi as shim
from .pipeline import FLUSHING, is_deferred_failure, sqlalchemy_errors
from .stats import StatsSnapshot


class ProxySession(Session):
    """A :class:`~sqlalchemy.orm.Session` bound to session-proxy engines.

    :param defer_flush_errors: let the writes of an explicit :meth:`flush`
        wait for the next round trip too (by default an explicit flush sends
        them before it returns, so ``try: session.flush() except
        IntegrityError`` works as without the proxy).  A failure then
        surfaces from the next statement or the commit, and leaves the
        session as a failed flush does.
    :param kwargs: everything :class:`~sqlalchemy.orm.Session` takes.
    """

    def __init__(self, *args: Any, defer_flush_errors: bool = False, **kwargs: Any) -> None:
        # The engines this session may use, recorded from the public ways of
        # naming them (SQLAlchemy keeps its own map private).
        self._proxy_binds: dict[int, Any] = {}
        super().__init__(*args, **kwargs)
        for bind in (kwargs.get("binds") or {}).values():
            self._proxy_binds[id(bind)] = bind
        self.defer_flush_errors = defer_flush_errors
        self._proxy_flush_rides = False
        self._proxy_committing = False

    def bind_mapper(self, mapper: Any, bind: Any) -> None:
        super().bind_mapper(mapper, bind)
        self._proxy_binds[id(bind)] = bind

    def bind_table(self, table: Any, bind: Any) -> None:
        super().bind_table(table, bind)
        self._proxy_binds[id(bind)] = bind

    def _proxy_transports(self) -> list[Any]:
        binds = [self.bind] if self.bind is not None else []
        binds.extend(self._proxy_binds.values())
        seen: dict[int, Any] = {}
        for bind in binds:
            engine = getattr(bind, "engine", bind)
            transport = getattr(getattr(engine, "dialect", None), "transport", None)
            if transport is not None:
                seen[id(transport)] = transport
        return list(seen.values())

    @property
    def proxy_stats(self) -> StatsSnapshot:
        """Round trips, bytes and statements of the proxy engines this session uses."""
        total = StatsSnapshot()
        for transport in self._proxy_transports():
            total = total + transport.stats.snapshot()
        return total

    # -- pipelined flushes ---------------------------------------------------

    def flush(self, objects: Any = None) -> None:
        token = FLUSHING.set(self)
        try:
            super().flush(objects)
        finally:
            FLUSHING.reset(token)

    def _autoflush(self) -> None:  # private: see session_proxy._sqlalchemy_private
        # The statement that triggered the autoflush carries its writes.
        rides, self._proxy_flush_rides = self._proxy_flush_rides, True
        try:
            super()._autoflush()
        finally:
            self._proxy_flush_rides = rides

    def commit(self) -> None:
        """Flush and commit; queued writes ride in the commit's request."""
        try:
            super().commit()
        except Exception as exc:
            # A flush inside commit() that failed, only later than usual: back
            # to where that flush ran, then fail it.
            if is_deferred_failure(exc) and private.reopen_if_prepared(
                private.open_transaction(self)
            ):
                self._fail_like_flush(exc)
            raise

    def _execute_internal(self, *args: Any, **kwargs: Any) -> Any:  # private: see there
        try:
            return super()._execute_internal(*args, **kwargs)
        except Exception as exc:
            self._fail_like_flush(exc)
            raise

    def begin_nested(self) -> Any:
        try:
            return super().begin_nested()
        except Exception as exc:
            self._fail_like_flush(exc)
            raise

    def _fail_like_flush(self, exc: BaseException) -> None:
        """Put the session where a failed flush leaves it (called in ``except``)."""
        transaction = private.open_transaction(self)
        if (
            not is_deferred_failure(exc)
            or private.is_flushing(self)
            or transaction is None
            or not transaction.is_active
        ):
            return
        private.roll_back_as_failed_flush(transaction)

    def _proxy_connections(self) -> list[shim.Connection]:
        found: dict[int, shim.Connection] = {}
        for transaction in private.transaction_chain(self):
            for connection in private.sqlalchemy_connections(transaction):
                dbapi_connection = getattr(
                    getattr(connection, "connection", None), "dbapi_connection", None
                )
                if isinstance(dbapi_connection, shim.Connection):
                    found[id(dbapi_connection)] = dbapi_connection
        return list(found.values())


@event.listens_for(ProxySession, "after_flush")
def _send_queue_unless_it_rides(session: ProxySession, flush_context: Any) -> None:
    """Send a flush's queued writes before it ends, unless a later request carries them.

    Writes ride along when the flush is an autoflush (the statement that
    triggered it carries them) or part of ``commit()`` (the COMMIT does),
    and, with ``defer_flush_errors``, after an explicit flush.  Inside a
    SAVEPOINT they always go out here.
    """
    rides = (
        session._proxy_flush_rides
        or session.defer_flush_errors
        or _flushing_for_commit(session)
    )
    if rides and not session.in_nested_transaction():
        return
    for connection in session._proxy_connections():
        with sqlalchemy_errors():
            connection.send_queue()


def _flushing_for_commit(session: ProxySession) -> bool:
    """Whether this flush is the one a transaction's commit runs first.

    ``Session.commit()`` and leaving ``with session.begin():`` both fire
    ``before_commit`` and then flush, before the connections commit.
    """
    return session._proxy_committing


@event.listens_for(ProxySession, "before_commit")
def _commit_begins(session: ProxySession) -> None:
    session._proxy_committing = True


@event.listens_for(ProxySession, "after_commit")
def _commit_ends(session: ProxySession) -> None:
    session._proxy_committing = False


@event.listens_for(ProxySession, "after_transaction_end")
def _transaction_ends(session: ProxySession, transaction: Any) -> None:
    # Not the inner transaction each flush opens and closes.
    if transaction.parent is None or transaction.nested:
        session._proxy_committing = False
