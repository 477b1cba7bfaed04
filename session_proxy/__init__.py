"""session-proxy: SQLAlchemy sessions whose database sits behind an HTTP server.

Client side of the project: the DBAPI shim (:mod:`session_proxy.dbapi`), the
proxy dialects (:mod:`session_proxy.dialects`), :class:`ProxySession` and
:func:`create_engine`.  The wire codec (:mod:`session_proxy.codec`), protocol
(:mod:`session_proxy.protocol`) and errors (:mod:`session_proxy.errors`) are
shared with the server.
"""

from __future__ import annotations

from .engine import create_engine, stats
from .session import ProxySession
from .stats import StatsSnapshot

__version__ = "0.1.0"

__all__ = ["ProxySession", "StatsSnapshot", "__version__", "create_engine", "stats"]
