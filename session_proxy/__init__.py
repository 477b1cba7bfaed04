"""session-proxy: SQLAlchemy sessions whose database sits behind an HTTP server.

Client side of the project: the DBAPI shim (:mod:`session_proxy.dbapi`), the
proxy dialects (:mod:`session_proxy.dialects`), :class:`ProxySession` and
:func:`create_engine`, all configured by one :class:`ClientConfig` (or the
same settings as keywords).  The error classes a caller may catch
(:class:`ProxyError` and its subclasses, and :class:`Error`, the base of the
PEP 249 errors of :mod:`session_proxy.errors`) and :class:`RetryPolicy` are
exported here.  The wire codec (:mod:`session_proxy.codec`), protocol
(:mod:`session_proxy.protocol`) and errors (:mod:`session_proxy.errors`) are
shared with the server.
"""

from __future__ import annotations

from .config import ClientConfig
from .engine import create_engine, stats
from .errors import (
    AccessDenied,
    AuthenticationFailed,
    Error,
    OperationRejected,
    PipelineAborted,
    ProtocolMismatch,
    ProxyError,
    ProxyTimeout,
    RemoteOperationError,
    RequestRejected,
    RowcountMismatch,
    ServerBusy,
    ServerUnreachable,
    TransactionExpired,
    TransactionLost,
    UnknownOperation,
)
from .logical import configure_local, configure_remote, operation_mode, remote_operation
from .retry import NO_RETRIES, RetryPolicy
from .session import ProxySession
from .stats import StatsSnapshot
from .values import register_exception

__version__ = "0.1.0"

__all__ = [
    "NO_RETRIES",
    "AccessDenied",
    "AuthenticationFailed",
    "ClientConfig",
    "Error",
    "OperationRejected",
    "PipelineAborted",
    "ProtocolMismatch",
    "ProxyError",
    "ProxySession",
    "ProxyTimeout",
    "RemoteOperationError",
    "RequestRejected",
    "RetryPolicy",
    "RowcountMismatch",
    "ServerBusy",
    "ServerUnreachable",
    "StatsSnapshot",
    "TransactionExpired",
    "TransactionLost",
    "UnknownOperation",
    "__version__",
    "configure_local",
    "configure_remote",
    "create_engine",
    "operation_mode",
    "register_exception",
    "remote_operation",
    "stats",
]
