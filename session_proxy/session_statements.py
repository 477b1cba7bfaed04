"""Which statements set session state a client connection should keep.

A real database connection keeps ``SET search_path ...`` or ``PRAGMA
foreign_keys=ON`` until it closes; the server pools its connections per
transaction and resets them between leases, so such a statement run in a
``connect`` event would last one transaction.  The shim connection records
the ones this module recognises (and the server accepted) while the pool
connects it, and sends them with every ``begin`` (the ``session`` prologue,
:mod:`session_proxy.wire.protocol`), so the server runs them first on each
leased connection.

Recognised: ``SET ...`` except what is transaction-scoped (``SET LOCAL``,
``SET TRANSACTION``, ``SET CONSTRAINTS``) or global (the server refuses
those anyway), and SQLite ``PRAGMA name = value`` / ``PRAGMA name(value)``
except the pragmas stored in the database file itself (``journal_mode``
...), which already hold for every connection.  Anything else the server
refuses in a prologue (:mod:`session_proxy_server.sql.session_guard`) fails
when first run, so it is never recorded.
"""

from __future__ import annotations

import re

__all__ = ["is_session_statement"]

_LEADING = re.compile(r"(?:\s+|--[^\n]*\n?|/\*.*?\*/)*", re.DOTALL)
_SET = re.compile(r"SET\s", re.IGNORECASE)
_NOT_SESSION_SET = re.compile(
    r"SET\s+(?:LOCAL|TRANSACTION|CONSTRAINTS|GLOBAL|PERSIST|PERSIST_ONLY)\b|SET\s+@@global\.",
    re.IGNORECASE,
)
_PRAGMA = re.compile(r"PRAGMA\s+(?:main\s*\.\s*)?([A-Za-z_]+)\s*(=|\()", re.IGNORECASE)
#: Pragmas stored in the database file, or that take a table name: not session state.
_FILE_PRAGMAS = frozenset(
    """
    journal_mode page_size auto_vacuum user_version application_id schema_version
    wal_checkpoint incremental_vacuum optimize integrity_check quick_check
    foreign_key_check foreign_key_list index_info index_list index_xinfo
    table_info table_list table_xinfo
    """.split()
)


def is_session_statement(sql: str) -> bool:
    """Whether ``sql`` sets connection-level session state worth keeping."""
    text = sql[_LEADING.match(sql).end() :]  # type: ignore[union-attr]
    if _SET.match(text):
        return _NOT_SESSION_SET.match(text) is None
    pragma = _PRAGMA.match(text)
    return pragma is not None and pragma.group(1).lower() not in _FILE_PRAGMAS
