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
from sqlalchemy.orm.session import SessionTransactionState

from . import dbapi as shim
from .pipeline import FLUSHING, sqlalchemy_errors
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
        super().__init__(*args, **kwargs)
        self.defer_flush_errors = defer_flush_errors
        self._proxy_flush_rides = False

    def _proxy_transports(self) -> list[Any]:
        binds = [self.bind] if self.bind is not None else []
        binds.extend(self._Session__binds.values() if hasattr(self, "_Session__binds") else ())
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

    def _flush(self, objects: Any = None) -> None:
        token = FLUSHING.set(self)
        try:
            super()._flush(objects)
        finally:
            FLUSHING.reset(token)

    def _autoflush(self) -> None:
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
            transaction = self._transaction
            if (
                getattr(exc, "proxy_deferred", False)
                and transaction is not None
                and transaction._state is SessionTransactionState.PREPARED
            ):
                # The flush inside commit() failed, only later than usual:
                # back to where that flush ran, then fail it.
                transaction._state = SessionTransactionState.ACTIVE
                self._fail_like_flush(exc)
            raise

    def _execute_internal(self, *args: Any, **kwargs: Any) -> Any:
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
        transaction = self._transaction
        if (
            not getattr(exc, "proxy_deferred", False)
            or self._flushing
            or transaction is None
            or not transaction.is_active
        ):
            return
        # What Session._flush does when the unit of work raises.
        transaction._begin().rollback(_capture_exception=True)

    def _proxy_connections(self) -> list[shim.Connection]:
        transaction = self._transaction
        found: dict[int, shim.Connection] = {}
        while transaction is not None:
            for connection, *_ in transaction._connections.values():
                dbapi_connection = getattr(
                    getattr(connection, "connection", None), "dbapi_connection", None
                )
                if isinstance(dbapi_connection, shim.Connection):
                    found[id(dbapi_connection)] = dbapi_connection
            transaction = transaction._parent
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

    ``Session.commit()`` and leaving ``with session.begin():`` both flush
    from the transaction's ``_prepare_impl()``, the step that moves it to
    PREPARED before its connections commit.
    """
    transaction = session._transaction
    while transaction is not None:
        running = getattr(transaction, "_current_fn", None)
        if getattr(running, "__name__", None) == "_prepare_impl":
            return True
        transaction = transaction._parent
    return False
