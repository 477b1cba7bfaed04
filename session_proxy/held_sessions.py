"""Server sessions this process holds under session pooling, released at exit.

A client DBAPI connection made with ``pooling=session`` holds one database
connection on the server (:class:`~session_proxy.wire.messages.SessionGrant`)
until it closes.  SQLAlchemy closes it when the pool discards or disposes
of it; this module releases the ones still open when the interpreter exits
(one attempt each, no retries), so a process that ends without disposing
of its engines does not leave database connections held until the
server's idle timeout (``--session-idle-seconds``) closes them.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from typing import Any

log = logging.getLogger("session_proxy")

#: Shim connections holding a server session right now.
_holding: weakref.WeakSet[Any] = weakref.WeakSet()


def track(connection: Any) -> None:
    """Remember ``connection`` until it releases its session."""
    _holding.add(connection)


def forget(connection: Any) -> None:
    """``connection`` released its session."""
    _holding.discard(connection)


def holding() -> int:
    """How many connections of this process hold a server session."""
    return len(_holding)


@atexit.register
def release_all() -> None:
    """Release every session still held (best effort, one attempt each).

    Ends of read-only transactions still on their way are sent first
    (:func:`session_proxy.background.drain`), so none meets a closed session.
    """
    from . import background

    background.drain()
    for connection in list(_holding):
        try:
            connection.release_session(retry=False)
        except Exception as exc:  # noqa: BLE001 - the server's idle timeout closes it anyway
            log.debug("could not release a server session at exit: %s", exc)
