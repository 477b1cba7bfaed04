"""Work a request leaves for after its response was written.

A handler that has something to finish which the client need not wait for
(a pooled connection's session reset, see
:meth:`session_proxy_server.leases.LeaseRegistry.end`) hands it to
:func:`defer`.  The WSGI app opens a scope per request (:func:`begin`) and,
when the request is answered, attaches what was deferred to the response
(:func:`attach`), which runs it when the server closes the response: after
its last byte was written, on the thread that served the request, before
that thread serves anything else.  Outside a scope (the lease reaper,
shutdown) :func:`defer` declines and the caller runs the work at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .http_messages import PlainResponse

log = logging.getLogger("session_proxy.server")

_local = threading.local()


def begin() -> None:
    """Open this thread's scope for the request being served."""
    _local.tasks = []


def defer(task: Callable[[], None]) -> bool:
    """Run ``task`` after the response; False (run it yourself) outside a scope."""
    tasks: list[Callable[[], None]] | None = getattr(_local, "tasks", None)
    if tasks is None:
        return False
    tasks.append(task)
    return True


def attach(response: PlainResponse) -> None:
    """Close the scope; run what was deferred when ``response`` is closed."""
    tasks: list[Callable[[], None]] | None = getattr(_local, "tasks", None)
    _local.tasks = None
    if tasks:
        response.call_on_close(lambda: run(tasks))


def run(tasks: list[Callable[[], None]]) -> None:
    """Run deferred ``tasks``; a failure is logged and the others still run."""
    for task in tasks:
        try:
            task()
        except Exception:  # noqa: BLE001 - nothing can answer the client any more
            log.exception("work deferred after a response failed")
