"""Statements that may take a session lock, which other sessions see at once.

The server resets a pooled connection's session between transactions
(``reset_session`` of the backend profiles), after the response was written
(:mod:`session_proxy_server.after_response`).  Most session state only
matters to the next lease of the connection, which cannot start before the
reset.  A session lock (``pg_advisory_lock``, ``GET_LOCK``) is different:
every other session sees it held until the reset, so a transaction whose
text may take one is reset before its answer.  What the text does not show
(a view calling ``GET_LOCK``) is released when the reset runs, just after
the answer.
"""

from __future__ import annotations

from .classify import classify


def may_take_session_lock(sql: str, dialect: str | None = None) -> bool:
    """Whether ``sql`` calls a function that may take a lock outliving the
    transaction (``pg_advisory_lock``, ``GET_LOCK``...): any name with ``lock``.

    Such a lock is visible to every other session at once, so the server
    releases it before answering rather than after (see
    :meth:`session_proxy_server.leases.LeaseRegistry.end`).
    """
    # Functions come from the hand scanner: no table extraction (sqlglot) needed.
    return any("lock" in name for name in classify(sql, dialect, tables=False).functions)
