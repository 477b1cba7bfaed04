"""session-proxy: SQLAlchemy sessions whose database sits behind an HTTP server.

Client side of the project: the DBAPI shim (:mod:`session_proxy.dbapi`), the
proxy dialects (:mod:`session_proxy.dialects`), :class:`ProxySession` and
:func:`create_engine`.  The wire codec (:mod:`session_proxy.codec`), protocol
(:mod:`session_proxy.protocol`) and errors (:mod:`session_proxy.errors`) are
shared with the server.
"""

from __future__ import annotations

from .engine import create_engine, stats
from .logical import configure_local, configure_remote, operation_mode, remote_operation
from .session import ProxySession
from .stats import StatsSnapshot
from .values import register_exception

__version__ = "0.1.0"

__all__ = [
    "ProxySession",
    "StatsSnapshot",
    "__version__",
    "configure_local",
    "configure_remote",
    "create_engine",
    "operation_mode",
    "register_exception",
    "remote_operation",
    "stats",
]
