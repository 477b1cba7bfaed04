"""Result rows past the first page stay in the database, not in the server.

A client reads a long result one page at a time (``fetch`` steps).  If the
driver buffered the whole result on ``execute`` (psycopg's and pymysql's
default cursors do), the server would hold every row of every open result:
a million-row SELECT cost about 150 MB for the 5,000 rows sent.  So a
statement that can be read through a cursor is run as one:

- **PostgreSQL**: ``DECLARE "name" NO SCROLL CURSOR FOR <statement>`` and
  ``FETCH FORWARD page+1`` sent together in one pipeline (one round trip,
  as before); later pages are ``FETCH FORWARD n``.  The database computes
  rows as they are fetched.  A finished cursor is closed (``CLOSE``)
  together with the next cursor's ``DECLARE``, which reuses its name, or
  with the transaction.
- **MySQL/MariaDB**: pymysql's unbuffered ``SSCursor``; rows stay on the
  socket until fetched.  An unbuffered result blocks the connection, so
  before another statement runs on it the rest of the open result is
  *spilled*: read a page at a time into a temporary file (at most
  :data:`SPILL_LIMIT_BYTES`; past that the cursor is dropped and a later
  fetch says so).
- **SQLite**: the stdlib cursor already steps the statement as rows are
  fetched; nothing to do.

Only statements a cursor can run take this path (:func:`cursorable`):
``SELECT``, ``VALUES``, ``TABLE`` and ``WITH`` queries, one statement, no
locking clause, no ``INTO``, nothing that writes.  Anything else runs as
before, buffered.  The rows of the first page are fetched in the same call
as ``execute``, so a result of one page behaves exactly as before.
"""

from __future__ import annotations

import pickle
import re
import tempfile
from collections.abc import Callable
from typing import Any

#: Encoded bytes one spilled MySQL result may take on disk.
SPILL_LIMIT_BYTES = 1024 * 1024 * 1024

_LEAD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.S)
_FIRST_WORD = re.compile(r"[A-Za-z]+")
#: Words after which a cursor would change what the statement does.
_NOT_CURSORABLE = re.compile(
    r"\b(?:into|insert|update|delete|merge|share|lock|copy|call|do|for|returning)\b", re.I
)


def cursorable(sql: str) -> bool:
    """Whether ``sql`` is one query that a server-side cursor can run unchanged.

    Deliberately conservative: any of the words that could make it write,
    lock rows or name a target (even inside a string or comment), or any
    semicolon, sends it down the buffered path.
    """
    lead = _LEAD.match(sql)
    word = _FIRST_WORD.match(sql, lead.end() if lead else 0)
    if word is None or word.group(0).lower() not in ("select", "values", "table", "with"):
        return False
    return ";" not in sql and _NOT_CURSORABLE.search(sql) is None


class ServerCursor:
    """A result with rows left to send, one row peeked ahead.

    ``fetchmany`` reads more rows (default: the driver cursor's own) and
    ``on_close`` runs when the result is closed.  ``exhausted`` says the
    peeked rows are the last ones (a first fetch came back short), so
    reading them asks the database nothing more: no round trip.
    """

    def __init__(
        self,
        cursor: Any,
        peeked: list[Any],
        fetchmany: Callable[[int], list[Any]] | None = None,
        on_close: Callable[[], None] | None = None,
        exhausted: bool = False,
    ) -> None:
        self.cursor = cursor
        self.peeked = peeked
        self.exhausted = exhausted
        self._fetchmany = fetchmany or cursor.fetchmany
        self._on_close = on_close

    def fetch(self, n: int) -> tuple[list[Any], bool]:
        """Up to ``n`` rows and whether the result is exhausted."""
        if self.exhausted and len(self.peeked) <= n:
            rows, self.peeked = self.peeked, []
            return rows, True
        rows = self.peeked + list(self._fetchmany(n + 1 - len(self.peeked)))
        if len(rows) > n:
            self.peeked = rows[n:]
            return rows[:n], False
        self.peeked = []
        return rows, True

    def settle(self) -> None:
        """Free the connection for another statement (see :class:`SpillingCursor`)."""

    def close(self) -> None:
        """Close the driver cursor."""
        self.cursor.close()
        if self._on_close is not None:
            self._on_close()


class SpillingCursor(ServerCursor):
    """A pymysql unbuffered result that moves to a temporary file when it must."""

    def __init__(self, cursor: Any, peeked: list[Any], page_size: int) -> None:
        super().__init__(cursor, peeked, self._read)
        self.page_size = page_size
        self.streaming = True
        self.spill: Any = None
        self.spilled_bytes = 0
        self.dropped = False
        self._buffer: list[Any] = []

    def _read(self, n: int) -> list[Any]:
        if self.dropped:
            raise CursorDropped(
                f"this result had more than {SPILL_LIMIT_BYTES} bytes of rows left when "
                "another statement ran on its transaction; MySQL streams results, so the "
                "rest could not be kept.  Fetch long results before running other statements"
            )
        if self.streaming:
            return list(self.cursor.fetchmany(n))
        rows = self._buffer
        while len(rows) < n:
            try:
                rows.extend(pickle.load(self.spill))
            except EOFError:
                break
        self._buffer = rows[n:]
        return rows[:n]

    def settle(self) -> None:
        """Read what is left of the result into a temporary file, a page at a time."""
        if not self.streaming:
            return
        self.streaming = False
        self.spill = tempfile.TemporaryFile(prefix="session-proxy-spill-")
        while True:
            rows = list(self.cursor.fetchmany(self.page_size))
            if not rows:
                break
            if self.spilled_bytes <= SPILL_LIMIT_BYTES:
                data = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
                self.spilled_bytes += len(data)
                self.spill.write(data)
            else:
                self.dropped = True  # keep reading: the socket must be drained
        self.cursor.close()
        self.spill.seek(0)

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()
        if self.streaming:
            self.cursor.close()


class CursorDropped(Exception):
    """A spilled result grew past :data:`SPILL_LIMIT_BYTES` and was dropped."""


def _quote(name: str) -> str:
    return '"' + name + '"'


_ROLLBACK_RE = re.compile(r"\s*(?:/\*.*?\*/\s*)*rollback\b", re.I | re.S)


class Portals:
    """PostgreSQL cursors of one lease (one transaction): names, reuse, closing.

    A finished cursor's name is reused by the next query, closed in the
    same pipeline as its new ``DECLARE``: no extra round trip, no pile of
    finished cursors in the database, and the same ``DECLARE`` text for the
    same query, which psycopg prepares once it repeats.
    """

    def __init__(self) -> None:
        self.declared = 0
        #: Names of finished cursors still declared in the transaction.
        self.free: list[str] = []

    def open(
        self,
        connection: Any,
        cursor: Any,
        sql: str,
        params: Any,
        first: int,
    ) -> tuple[Any, list[Any], str]:
        """Declare a cursor for ``sql`` and fetch ``first`` rows; one round trip.

        Returns the cursor holding the fetched rows (its ``description`` is
        the query's), the rows, and the cursor's name.
        """
        if self.free:
            name, reused = self.free.pop(), True
        else:
            name, reused = f"_sp_{self.declared}", False
            self.declared += 1
        declare = connection.cursor()
        try:
            with connection.pipeline():
                if reused:
                    declare.execute(f"CLOSE {_quote(name)}")
                declare.execute(f"DECLARE {_quote(name)} NO SCROLL CURSOR FOR {sql}", params)
                cursor.execute(f"FETCH FORWARD {int(first)} FROM {_quote(name)}")
        finally:
            declare.close()
        return cursor, cursor.fetchall(), name

    def fetcher(self, cursor: Any, name: str) -> Callable[[int], list[Any]]:
        """A ``fetchmany`` that reads the next rows of cursor ``name``."""

        def fetchmany(n: int) -> list[Any]:
            if n <= 0:
                return []  # FETCH FORWARD 0 would mean "the current row again"
            cursor.execute(f"FETCH FORWARD {int(n)} FROM {_quote(name)}")
            return cursor.fetchall()

        return fetchmany

    def finished(self, name: str) -> None:
        """Cursor ``name`` is done; the next query reuses (and first closes) it."""
        self.free.append(name)

    def after(self, sql: str) -> None:
        """Note a statement run outside these cursors.

        ``ROLLBACK TO SAVEPOINT`` closes every cursor declared since the
        savepoint, so a finished name may no longer exist and its ``CLOSE``
        would fail: such names are not reused (a name still declared is
        closed with the transaction).
        """
        if _ROLLBACK_RE.match(sql):
            self.free.clear()

