"""session-proxy: SQLAlchemy sessions whose database sits behind an HTTP server.

Client side of the project: the DBAPI shim (:mod:`session_proxy.dbapi`), the
proxy dialects (:mod:`session_proxy.dialects`), on which every ORM
``Session`` pipelines its flushes (:mod:`session_proxy.session_events`),
the convenience :class:`ProxySession` and :func:`create_engine`, all
configured by one :class:`ClientConfig` (or the same settings as keywords).
The error classes a caller may catch (:class:`ProxyError` and its
subclasses, and :class:`Error`, the base of the PEP 249 errors of
:mod:`session_proxy.errors`) and :class:`RetryPolicy` are exported here.
The wire codec (:mod:`session_proxy.wire.codec`), protocol
(:mod:`session_proxy.wire.protocol`) and errors (:mod:`session_proxy.errors`)
are shared with the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import stats as _stats_module  # noqa: F401 - bound first so ``stats`` below wins
from .wire import __version__

if TYPE_CHECKING:
    from .cache import ReadCache
    from .config import ClientConfig
    from .engine import create_engine
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
        SessionClosed,
        TransactionExpired,
        TransactionLost,
        UnknownOperation,
    )
    from .logical import configure_local, configure_remote, operation_mode, remote_operation
    from .retry import NO_RETRIES, RetryPolicy
    from .session import ProxySession
    from .stats import StatsSnapshot
    from .values import register_exception

#: Where each public name is defined (module relative to this package).
_LAZY: dict[str, str] = {
    "ClientConfig": ".config",
    "create_engine": ".engine",
    **dict.fromkeys(
        (
            "AccessDenied", "AuthenticationFailed", "Error", "OperationRejected",
            "PipelineAborted", "ProtocolMismatch", "ProxyError", "ProxyTimeout",
            "RemoteOperationError", "RequestRejected", "RowcountMismatch", "ServerBusy",
            "ServerUnreachable", "SessionClosed", "TransactionExpired", "TransactionLost",
            "UnknownOperation",
        ),
        ".errors",
    ),
    **dict.fromkeys(
        ("configure_local", "configure_remote", "operation_mode", "remote_operation"),
        ".logical",
    ),
    "NO_RETRIES": ".retry",
    "RetryPolicy": ".retry",
    "ProxySession": ".session",
    "ReadCache": ".cache",
    "StatsSnapshot": ".stats",
    "register_exception": ".values",
}


def stats(source: Any = None) -> Any:
    """:func:`session_proxy.engine.stats`, imported on first call.

    The counters of a proxy engine, a remote client, or (None) the process's
    remote operations client.  Defined here, not loaded lazily: the submodule
    :mod:`session_proxy.stats` would otherwise shadow it once imported.
    """
    from .engine import stats as engine_stats

    return engine_stats(source)


def __getattr__(name: str) -> Any:
    """Import the module defining a public name on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

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
    "ReadCache",
    "RemoteOperationError",
    "RequestRejected",
    "RetryPolicy",
    "RowcountMismatch",
    "ServerBusy",
    "ServerUnreachable",
    "SessionClosed",
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
