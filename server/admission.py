"""Admission control: every open transaction keeps a server thread within reach.

The HTTP server runs the app on a fixed pool of threads.  A request that
starts a transaction (or runs outside one: a logical call, a session open)
can block inside its thread, on a row lock or a pooled connection, and the
request that would unblock it is often the *follow-up* of another open
transaction (its COMMIT), which needs a thread of its own.  If requests of
the first kind take every thread, the follow-ups queue behind them and
nothing moves until leases expire: thread-pool starvation.

:class:`Admission` prevents it.  A request that starts a transaction enters
the app only while::

    requests in the app (itself included) + idle open transactions <= threads

where an *idle* open transaction is one no request is using right now: each
of them may send its follow-up at any moment and must find a thread free.
Follow-ups on open transactions are never refused, so the sum only grows
by admitting, which checks it: a follow-up that arrives turns an idle
transaction into a request in the app, and a request that ends frees its
thread as its transaction (if any) turns idle again.  Open transactions
therefore never outnumber the threads (the effective cap is the lower of
``--max-transactions`` and ``--threads``).

A refused request does not wait in its thread (waiting there would bring
the starvation back): it is answered at once with 503 ``server_busy`` and
``Retry-After: 0``; nothing of it ran, so the client's retry policy sends it
again (same idempotency key) after its jittered backoff.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Admission:
    """Counts and decides entry for requests that start a transaction.

    :param in_flight: requests in the app right now (the caller included).
    :param idle_transactions: open transactions no request is using.
    :param threads: the server's worker threads; ``None`` admits everything
        (a server with a thread per connection cannot starve this way).
    """

    def __init__(
        self,
        in_flight: Callable[[], int],
        idle_transactions: Callable[[], int],
        threads: int | None = None,
    ) -> None:
        self._in_flight = in_flight
        self._idle_transactions = idle_transactions
        self.threads = threads
        #: Requests let in, and refused for want of a thread, since start.
        self.admitted = 0
        self.refused_busy = 0
        self._lock = threading.Lock()

    def limit(self, threads: int | None) -> None:
        """Admit against a pool of ``threads`` worker threads (``None``: no limit)."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        self.threads = threads

    def enter(self) -> bool:
        """Whether a request starting a transaction may run now (counted either way)."""
        with self._lock:
            if self.threads is not None:
                demand = self._in_flight() + self._idle_transactions()
                if demand > self.threads:
                    self.refused_busy += 1
                    return False
            self.admitted += 1
            return True
