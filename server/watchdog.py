"""Cancels database work that runs past its deadline, from another thread.

The database's own statement timeout (PostgreSQL ``statement_timeout``,
MariaDB ``max_statement_time``, MySQL ``max_execution_time``) is a session
setting a client can switch off, and it knows nothing of the longest
transaction allowed.  The watchdog is the server's own enforcement: the
executor *arms* it around every driver call that runs a statement or
fetches rows, with a deadline (the statement timeout plus a little grace,
or the transaction's end, whichever is first), and *disarms* it when the
call returns.  One thread sleeps until the nearest deadline and then
cancels that connection's running statement with the cancel its backend
profile gives (:meth:`session_proxy_server.backends.base.Backend.canceller`):

- PostgreSQL (psycopg): ``connection.cancel()``, a cancel request on a
  connection of its own;
- MySQL and MariaDB (pymysql): ``KILL QUERY <thread id>`` sent on a short
  connection of its own;
- SQLite: ``connection.interrupt()``.

A statement can ignore a cancel: a PL/pgSQL block or a MySQL procedure
that catches ``query_canceled`` / the interruption and loops on.  So a
watch that fired and whose call has still not returned
:data:`ESCALATE_SECONDS` later ends the connection itself, with the
terminate its profile gives (:meth:`session_proxy_server.backends.base.Backend.terminator`:
``pg_terminate_backend`` or ``KILL CONNECTION`` from a connection of its
own, SQLite interrupted again).

A :class:`Watch` that fired remembers why, so the executor turns whatever
the driver then returns (an error, or a value: an interrupted MariaDB
``BENCHMARK()`` answers 0) into a clear failure.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger("session_proxy.server")

#: What a watch stops: the statement, or the whole transaction.
STATEMENT = "statement"
TRANSACTION = "transaction"
#: How long after a cancel a call that has not returned gets its connection ended.
ESCALATE_SECONDS = 2.0
#: Disarmed watches stay in the heap until their deadline passes or the heap
#: doubles in size (at least this many entries), when it is rebuilt without them.
_COMPACT_AT = 64


class Watch:
    """One armed deadline on one driver connection."""

    __slots__ = ("deadline", "reason", "cancel", "fired", "done", "terminate", "follows")

    def __init__(
        self,
        deadline: float,
        reason: str,
        cancel: Callable[[], None],
        terminate: Callable[[], None] | None = None,
    ) -> None:
        self.deadline = deadline
        self.reason = reason
        self.cancel = cancel
        #: Ends the connection when the call ignores the cancel.
        self.terminate = terminate
        #: The watch this one escalates (it fires only if that call still runs).
        self.follows: Watch | None = None
        #: The reason it fired (STATEMENT or TRANSACTION), or None.
        self.fired: str | None = None
        self.done = False


class Watchdog:
    """One daemon thread cancelling the calls whose deadline passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        #: Heap size at which disarmed watches are dropped (twice what was left last time).
        self._compact_at = _COMPACT_AT
        #: The deadline the thread sleeps until (infinity: until notified).
        self._wakes_at = math.inf
        #: Calls cancelled so far, by reason.
        self.fired = {STATEMENT: 0, TRANSACTION: 0}

    def arm(
        self,
        deadline: float,
        reason: str,
        cancel: Callable[[], None],
        terminate: Callable[[], None] | None = None,
    ) -> Watch:
        """Cancel with ``cancel`` at ``deadline`` (monotonic) unless disarmed first.

        With ``terminate``, a call still running :data:`ESCALATE_SECONDS`
        after the cancel has its connection ended.
        """
        watch = Watch(deadline, reason, cancel, terminate)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
                self._thread.start()
            heap = self._heap
            if len(heap) >= self._compact_at:
                self._heap = heap = [entry for entry in heap if not entry[2].done]
                heapq.heapify(heap)
                self._compact_at = max(_COMPACT_AT, 2 * len(heap))
            heapq.heappush(heap, (deadline, next(self._counter), watch))
            # A deadline after the one the thread sleeps until needs no wake-up:
            # statement deadlines mostly come in order, so most arms wake nothing.
            if deadline < self._wakes_at:
                self._cond.notify()
        return watch

    def disarm(self, watch: Watch) -> None:
        """The call returned; a watch that fired keeps :attr:`Watch.fired`."""
        with self._cond:
            watch.done = True

    def stop(self) -> None:
        """Stop the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    if not self._heap:
                        self._wakes_at = math.inf
                        self._cond.wait()
                        continue
                    # Sleep until the earliest deadline even when its watch
                    # was disarmed: dropping it now would leave the thread
                    # waiting for a notify, which every later arm would then send.
                    self._wakes_at = self._heap[0][0]
                    wait = self._wakes_at - time.monotonic()
                    if wait > 0:
                        self._cond.wait(wait)
                    elif self._heap[0][2].done:
                        heapq.heappop(self._heap)
                    else:
                        break
                if self._stop:
                    return
                _, _, watch = heapq.heappop(self._heap)
                if watch.follows is not None:
                    if watch.follows.done:
                        continue
                    log.warning("a statement ignored its cancel; ending its connection")
                else:
                    watch.fired = watch.reason
                    self.fired[watch.reason] += 1
                    if watch.terminate is not None:
                        follow = Watch(
                            time.monotonic() + ESCALATE_SECONDS, watch.reason, watch.terminate
                        )
                        follow.follows = watch
                        heapq.heappush(self._heap, (follow.deadline, next(self._counter), follow))
            try:
                watch.cancel()
            except Exception:  # noqa: BLE001 - the call may have just ended
                log.warning("could not cancel a statement past its %s deadline", watch.reason,
                            exc_info=True)
