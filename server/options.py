"""Which ``begin`` connection options this server's backend accepts.

:func:`session_proxy_server.requests_validation.parse_pipeline_request` checks the shape of
``begin`` options (an isolation level out of :data:`~session_proxy.wire.protocol.ISOLATION_LEVELS`,
booleans for ``read_only`` and ``deferrable``).  Each backend accepts less:
SQLite has no ``READ COMMITTED`` or ``REPEATABLE READ``, and only PostgreSQL
has read-only and deferrable transactions.  :class:`ConnectionOptions` asks
the server's real dialect what it supports, once at start-up, and refuses
anything else with a 400 naming the field, before a connection is leased.

SQLite's ``read_only`` is refused rather than emulated (``PRAGMA
query_only`` would have to be undone at every lease end, and a client that
wants a read-only transaction there can simply not write).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.engine import Engine

from session_proxy.wire import protocol
from session_proxy.wire.errors import ProtocolError


@dataclasses.dataclass(frozen=True)
class ConnectionOptions:
    """The options one backend supports."""

    backend: str
    isolation_levels: frozenset[str]
    #: Boolean options the backend has (``read_only``, ``deferrable``).
    flags: frozenset[str]

    @classmethod
    def for_engine(cls, engine: Engine) -> ConnectionOptions:
        """Ask ``engine``'s dialect (on one pooled connection) what it supports."""
        dialect = engine.dialect
        with engine.connect() as connection:
            levels = dialect.get_isolation_level_values(connection.connection.dbapi_connection)
        flags = {
            name
            for name, method in (("read_only", "set_readonly"), ("deferrable", "set_deferrable"))
            if hasattr(dialect, method)
        }
        return cls(dialect.name, frozenset(levels), frozenset(flags))

    def check(self, steps: list[dict[str, Any]]) -> None:
        """Raise :class:`ProtocolError` if a ``begin`` step asks for what this backend lacks."""
        for index, step in enumerate(steps):
            if step["op"] != protocol.BEGIN:
                continue
            options = step.get("options", {})
            level = options.get("isolation_level")
            if level is not None and level not in self.isolation_levels:
                raise ProtocolError(
                    f"step {index} (begin): 'isolation_level' {level!r} is not supported "
                    f"on {self.backend}; it has {sorted(self.isolation_levels)}"
                )
            for name in ("read_only", "deferrable"):
                if options.get(name) and name not in self.flags:
                    raise ProtocolError(
                        f"step {index} (begin): {name!r} is not supported on {self.backend}"
                    )
