"""Requests nobody waits for: ending a transaction that only read.

When the server says an open transaction has only run statements that
provably read and locked nothing (:class:`~session_proxy.wire.messages.PipelineReply`
``read_only``), its COMMIT (or ROLLBACK) cannot fail in a way that matters
to the caller: nothing it did is lost either way.  The DBAPI shim
(:meth:`session_proxy.dbapi.Connection.commit`) then hands the request to
:data:`SENDER` and returns at once; the caller's next statement starts a new
transaction on its own lease, without waiting for the old one to end.

One daemon thread per process sends them, in order, through the engine's
own transport (same retries, same idempotency keys), so the server holds
the read snapshot for about one one-way trip longer than the caller waited
(measured in docs/pipelining.md).  The connection's next transaction waits
for that answer before it opens a lease of its own, so one client
connection never holds two leases: the server's caps on open transactions
count as before, and only the time between the caller's transactions is
saved (all of it, when the caller does anything else in between; none,
when it starts its next transaction at once).  What can go wrong, and what
happens:

- the answer is an error (the lease expired, the server restarted, the
  transaction was lost): nothing was written, so nothing is lost; it is
  logged at WARNING and counted in ``stats.background_failures``;
- the server cannot be reached: the request is retried as any other, then
  given up; the server's lease reaper rolls the transaction back after
  ``--lease-seconds`` (the longest a forgotten read snapshot is held);
- the process exits: :func:`drain` runs at exit and waits up to
  :data:`EXIT_WAIT_SECONDS` for what is left; anything still unsent is
  rolled back by the reaper, as above.

Round trips sent here are counted in ``stats.background_round_trips``, not
in ``round_trips`` (which counts what a caller waited for); their bytes are
counted as usual.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
from typing import Any

from .stats import background_requests
from .wire.messages import Step

log = logging.getLogger("session_proxy.background")

#: How long the process waits at exit for unsent requests.
EXIT_WAIT_SECONDS = 5.0


class Sender:
    """Sends pipeline requests from one daemon thread, in the order given."""

    def __init__(self) -> None:
        self._queue: queue.Queue[
            tuple[Any, str, str | None, list[Step], threading.Event]
        ] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @staticmethod
    def available() -> bool:
        """Whether a request may still be handed over: not while the interpreter exits.

        A pooled connection finalized by the garbage collector at exit
        rolls back; a thread started then never runs (Python waits for it
        for ever), so such an end is sent the ordinary way.
        """
        return not sys.is_finalizing() and threading.main_thread().is_alive()

    def submit(
        self, transport: Any, txn: str, base_url: str | None, steps: list[Step]
    ) -> threading.Event:
        """Send ``steps`` for transaction ``txn`` soon; nobody waits for the answer.

        Returns an event set once the request was answered (or given up).
        """
        self._ensure_thread()
        done = threading.Event()
        self._queue.put((transport, txn, base_url, steps, done))
        return done

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            if self._pid != os.getpid():
                # A forked child: the parent's thread and queue are not ours.
                self._queue = queue.Queue()
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="session-proxy-background", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            transport, txn, base_url, steps, done = self._queue.get()
            try:
                with background_requests():
                    transport.pipeline(txn, steps, base_url)
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                transport.stats.add(background_failures=1)
                log.warning(
                    "ending read-only transaction %s without waiting failed: %s "
                    "(nothing was written; the server rolls it back if still open)",
                    txn, exc,
                )
            finally:
                done.set()
                self._queue.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted request was answered; False on timeout."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                done.wait(remaining)
        return True


#: The process's sender.
SENDER = Sender()


def drain(timeout: float = EXIT_WAIT_SECONDS) -> bool:
    """Wait for the requests nobody waited for; False if some are still unsent."""
    return SENDER.drain(timeout)


atexit.register(drain)
