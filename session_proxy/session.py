"""``ProxySession``: the SQLAlchemy ``Session`` for proxy engines.

Use it wherever a ``Session`` is made::

    Session = sessionmaker(class_=ProxySession, bind=proxy_engine)

It behaves as a plain :class:`~sqlalchemy.orm.Session`: every statement,
including flushes, lazy loads and refreshes, goes through the proxy engine's
DBAPI shim.  It adds what only a session knows about: the counters of the
engines it is bound to, read with :attr:`ProxySession.proxy_stats`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .stats import StatsSnapshot


class ProxySession(Session):
    """A :class:`~sqlalchemy.orm.Session` bound to session-proxy engines."""

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
