"""A TCP relay on loopback that adds network latency and, on demand, faults.

``Relay(target_port, rtt=0.005)`` listens on a free loopback port and
forwards every connection to ``127.0.0.1:target_port``.  Bytes travelling
in either direction are held for ``rtt / 2`` before they are passed on, so an
HTTP request and its response together wait one full round-trip time, as
they would on a network, while data already in flight keeps flowing
(pipelined, no bandwidth limit).  Nothing sleeps in client or server code:
the wait happens here, on the wire.

A new connection also pays TCP's handshake, as on a network, where
``connect()`` returns one RTT after the SYN and the server learns of the
connection half an RTT later: the relay accepts at once (loopback), so it
holds the first client bytes until one RTT after the connection opened,
then ``rtt / 2`` in flight, and the first server bytes (a MySQL greeting,
say) until 1.5 RTT after it opened, then ``rtt / 2``.  A request on a fresh
connection therefore costs two RTTs and one on a kept-alive connection
one; TLS handshakes are bytes like any others and pay their own round
trips.  ``handshake=False`` turns this off (the first wave's model).

Each direction of each connection has a reader thread, which stamps every
chunk with its due time, and a writer thread, which sends it when due;
``time.sleep`` is precise to well under a millisecond, unlike an event
loop's timer.  Use the relay as a context manager or call :meth:`Relay.start`
and :meth:`Relay.stop`.

Fault injection
---------------
The relay knows nothing of HTTP framing; it sees a *request* start on a
connection at the first client-to-server chunk after the connection opened
or after any server-to-client data was seen (which fits a client that waits
for each response before sending the next request).  At that moment it
decides which fault, if any, applies to the request: first a one-shot fault
armed with :meth:`Relay.inject` (any connection takes the next one), else one
drawn at random with the rates of :class:`Faults`, from a
``random.Random(seed)`` that the relay owns.  The faults are:

``"drop_response"``
    The request reaches the server, which handles it, but when the response
    starts to arrive the relay forwards none of it: it resets the client's
    connection (TCP RST) and closes the upstream one.  The client sees a
    connection error after its request was sent and before any response.
``"reset"``
    The relay resets the client's connection (TCP RST) instead of
    forwarding the request, and closes the upstream one: the server never
    sees the request.
``"delay"``
    The request's chunks are held ``Faults.delay_seconds`` longer, on top of
    ``rtt / 2``.

:attr:`Relay.counts` tells how many requests the relay saw and how many of
each fault it applied.

Counting round trips
--------------------
A *turn* is one request/response exchange on a connection: client-to-server
bytes followed by server-to-client bytes.  The relay counts a turn when the
first server chunk arrives after client bytes, so a pipelined burst of
requests answered together counts once, as the network charges it once.
:attr:`Relay.turns` is the total over every connection, :attr:`Relay.connections`
how many connections the relay accepted, and :meth:`Relay.turns_per_connection`
the count of each, in the order accepted.  In front of a database the turns
are its round trips: a proxied transaction is measured by the difference of
:attr:`Relay.turns` before and after it.
"""

from __future__ import annotations

import collections
import contextlib
import math
import queue
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from session_proxy_server.testing import settled

CHUNK = 256 * 1024

FAULT_KINDS: tuple[str, ...] = ("drop_response", "reset", "delay")
"""The fault kinds, in the order :class:`Faults` rates are drawn."""

_RST_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@dataclass(frozen=True)
class Faults:
    """Random faults a :class:`Relay` applies to the HTTP requests it relays.

    ``drop_response``, ``reset`` and ``delay`` are the probabilities, per
    request, of each fault (see the module docstring); each lies in 0..1 and
    together they add up to at most 1, since one uniform draw per request
    picks at most one of them.  ``delay_seconds`` is the extra hold of a
    ``"delay"`` fault, random or injected.  ``seed`` seeds the relay's random
    generator, so a seeded run repeats its faults request for request
    (``None``: seeded from the OS).
    """

    drop_response: float = 0.0
    reset: float = 0.0
    delay: float = 0.0
    delay_seconds: float = 0.05
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in FAULT_KINDS:
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise ValueError(f"Faults.{name} must be a number in 0..1, got {rate!r}")
            if not 0.0 <= rate <= 1.0:  # also rejects NaN
                raise ValueError(f"Faults.{name} must be in 0..1, got {rate!r}")
        total = self.drop_response + self.reset + self.delay
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"Faults.drop_response + Faults.reset + Faults.delay must be <= 1, got {total!r}"
            )
        seconds = self.delay_seconds
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(f"Faults.delay_seconds must be a finite number >= 0, got {seconds!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"Faults.seed must be an int or None, got {self.seed!r}")

    def pick(self, draw: float) -> str | None:
        """The fault that a uniform ``draw`` in [0, 1) selects, or ``None``."""
        threshold = 0.0
        for name in FAULT_KINDS:
            rate = getattr(self, name)
            threshold += rate
            if rate > 0 and draw < threshold:
                return name
        return None


class _Connection:
    """What the two directions of one relayed connection share."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.lock = threading.Lock()
        self.awaiting_request = True  # the next client chunk starts a request
        self.drop_response = False  # the current request's response is to be dropped
        self.extra_delay = 0.0  # extra hold for the current request's chunks
        self.aborted = False
        self.turns = 0  # request/response exchanges completed


class Relay:
    """Forward ``127.0.0.1:port`` to ``target_host:target_port`` with added RTT.

    ``faults`` sets random per-request faults; :meth:`inject` arms one-shot
    ones and :attr:`counts` reports what happened (see the module docstring).
    """

    def __init__(
        self,
        target_port: int,
        rtt: float = 0.0,
        target_host: str = "127.0.0.1",
        faults: Faults | None = None,
        handshake: bool = True,
    ) -> None:
        if rtt < 0:
            raise ValueError(f"rtt must be >= 0, got {rtt}")
        self.target_host = target_host
        self.target_port = target_port
        self.rtt = rtt
        self.handshake = handshake
        self.faults: Faults = faults if faults is not None else Faults()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._faults_lock = threading.Lock()
        self._random = random.Random(self.faults.seed)
        self._armed: collections.deque[str] = collections.deque()
        self._counts: dict[str, int] = dict.fromkeys(("requests", *FAULT_KINDS), 0)
        self._connections: list[_Connection] = []

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the relay."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def counts(self) -> dict[str, int]:
        """A copy of ``{"requests": n, "drop_response": n, "reset": n, "delay": n}``.

        ``requests`` counts the requests seen, the others the faults applied
        (a ``drop_response`` counts when a response was actually dropped).
        """
        with self._faults_lock:
            return dict(self._counts)

    @property
    def turns(self) -> int:
        """Request/response turns completed so far, over every connection."""
        return sum(self.turns_per_connection())

    @property
    def connections(self) -> int:
        """How many connections the relay accepted and forwarded so far."""
        with self._faults_lock:
            return len(self._connections)

    def settled_turns(self, quiet: float = 0.2) -> int:
        """:attr:`turns` once it stopped moving for ``quiet`` seconds.

        A server may still talk to its database after it answered (a session
        reset after the response): those turns belong to what just ended.
        """
        return settled(lambda: self.turns, quiet)

    def turns_per_connection(self) -> list[int]:
        """Turns completed on each connection, in the order they were accepted."""
        with self._faults_lock:
            connections = list(self._connections)
        turns = []
        for conn in connections:
            with conn.lock:
                turns.append(conn.turns)
        return turns

    def inject(self, kind: str, count: int = 1) -> None:
        """Arm ``count`` one-shot ``kind`` faults for the next requests, on any connection.

        Armed faults apply in the order armed and before any random fault.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an int >= 1, got {count!r}")
        with self._faults_lock:
            self._armed.extend([kind] * count)

    def start(self) -> Relay:
        """Start accepting connections."""
        self._listener.listen(128)
        self._acceptor = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        if self._acceptor is not None:
            self._acceptor.join(5)

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.target_host, self.target_port))
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.update((client, upstream))
            conn = _Connection(client, upstream)
            with self._faults_lock:
                self._connections.append(conn)
            opened = time.monotonic()
            # The first bytes each way wait for the handshake (module docstring).
            setup = self.rtt if self.handshake else 0.0
            self._forward(client, upstream, lambda conn=conn: self._on_request_chunk(conn),
                          not_before=opened + setup)
            self._forward(upstream, client, lambda conn=conn: self._on_response_chunk(conn),
                          not_before=opened + 1.5 * setup)

    def _start_request(self) -> str | None:
        """Count a new request and decide its fault (``None``: no fault)."""
        with self._faults_lock:
            self._counts["requests"] += 1
            # One draw per request, used or not, so that with a seed the random
            # fate of the n-th request does not depend on injected faults.
            draw = self._random.random()
            fault = self._armed.popleft() if self._armed else self.faults.pick(draw)
            if fault in ("reset", "delay"):
                self._counts[fault] += 1
        return fault

    def _on_request_chunk(self, conn: _Connection) -> float | None:
        """Extra hold for a client chunk, or ``None`` when the connection is gone."""
        with conn.lock:
            if conn.aborted:
                return None
            starts = conn.awaiting_request
            conn.awaiting_request = False
        if starts:
            fault = self._start_request()
            with conn.lock:
                # Set before the request is forwarded, so before any response.
                conn.drop_response = fault == "drop_response"
                conn.extra_delay = self.faults.delay_seconds if fault == "delay" else 0.0
            if fault == "reset":
                self._abort(conn)
                return None
        return conn.extra_delay

    def _on_response_chunk(self, conn: _Connection) -> float | None:
        """Extra hold for a server chunk, or ``None`` when the connection is gone."""
        with conn.lock:
            if conn.aborted:
                return None
            drop = conn.drop_response
            conn.drop_response = False
            if not conn.awaiting_request:
                conn.turns += 1  # the first answer to client bytes ends a turn
            conn.awaiting_request = True
        if drop:
            with self._faults_lock:
                self._counts["drop_response"] += 1
            self._abort(conn)
            return None
        return 0.0

    def _abort(self, conn: _Connection) -> None:
        """Reset the client's connection (RST, not FIN) and close the upstream one."""
        with conn.lock:
            if conn.aborted:
                return
            conn.aborted = True
        client, upstream = conn.client, conn.upstream
        # SHUT_RD wakes a reader blocked in client.recv() and sends nothing;
        # the client socket is closed before upstream's shutdown can make a
        # writer send a FIN to the client.
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RD)
        with contextlib.suppress(OSError):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_ON_CLOSE)
        with contextlib.suppress(OSError):
            client.close()
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            upstream.close()
        with self._lock:
            self._sockets.difference_update((client, upstream))

    def _forward(
        self,
        source: socket.socket,
        target: socket.socket,
        inspect: Callable[[], float | None],
        not_before: float = 0.0,
    ) -> None:
        """Copy ``source`` to ``target``, each chunk held for half the RTT.

        ``inspect`` runs for each chunk read and returns the chunk's extra
        hold, or ``None`` to stop both threads without touching ``target``.
        No chunk leaves before ``not_before`` (a ``time.monotonic()`` value)
        plus half the RTT.
        """
        delay = self.rtt / 2
        pending: queue.SimpleQueue[tuple[float, bytes | None]] = queue.SimpleQueue()

        def read() -> None:
            while True:
                try:
                    data = source.recv(CHUNK)
                except OSError:
                    data = b""
                extra = inspect() if data else 0.0
                if extra is None:
                    pending.put((0.0, None))
                    return
                pending.put((max(time.monotonic(), not_before) + delay + extra, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = pending.get()
                if data is None:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if not data:
                        target.shutdown(socket.SHUT_WR)
                        return
                    target.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, name="relay-read", daemon=True).start()
        threading.Thread(target=write, name="relay-write", daemon=True).start()
