"""``ProxySession``: a convenience ``Session`` for proxy engines.

Every :class:`~sqlalchemy.orm.Session` on a proxy engine pipelines its
flushes, a plain one and an application's own subclass alike
(:mod:`session_proxy.session_events`): the unit of work's writes whose
results nothing needs ride with the next statement that needs a result, or
with the commit, so adding any number of objects with known keys and
committing is one round trip.  ``ProxySession`` adds:

- ``defer_flush_errors=True`` as a constructor argument (a plain session
  gets it from ``Session(info={"proxy_defer_flush_errors": True})`` or the
  engine option ``proxy_defer_flush_errors=True``);
- a queued write that fails at ``commit()`` without a flush first (a
  deferred flush, a pipelined Core statement) or while ``begin_nested()``
  opens its SAVEPOINT leaves the session as a failed flush does; a plain
  session is left as a failed commit leaves it (``rollback()`` needed all
  the same);
- the counters of the engines it is bound to, :attr:`ProxySession.proxy_stats`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from . import _sqlalchemy_private as private
from . import session_events
from .pipeline import is_deferred_failure
from .stats import StatsSnapshot

session_events.install()


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

    def commit(self) -> None:
        """Flush and commit; queued writes ride in the commit's request."""
        try:
            super().commit()
        except Exception as exc:
            # A queued write that failed only at the COMMIT: back to where
            # its flush ran, then fail it.
            if is_deferred_failure(exc) and private.reopen_if_prepared(
                private.open_transaction(self)
            ):
                session_events.fail_like_flush(self, exc)
            raise

    def begin_nested(self) -> Any:
        try:
            return super().begin_nested()
        except Exception as exc:
            session_events.fail_like_flush(self, exc)
            raise
