"""A TCP relay on loopback that adds network latency.

``Relay(target_port, rtt=0.005)`` listens on a free loopback port and
forwards every connection to ``127.0.0.1:target_port``.  Bytes travelling
in either direction are held for ``rtt / 2`` before they are passed on, so an
HTTP request and its response together wait one full round-trip time, as
they would on a network, while data already in flight keeps flowing
(pipelined, no bandwidth limit).  Nothing sleeps in client or server code:
the wait happens here, on the wire.

Each direction of each connection has a reader thread, which stamps every
chunk with its due time, and a writer thread, which sends it when due;
``time.sleep`` is precise to well under a millisecond, unlike an event
loop's timer.  Use the relay as a context manager or call :meth:`Relay.start`
and :meth:`Relay.stop`.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from typing import Any

CHUNK = 256 * 1024


class Relay:
    """Forward ``127.0.0.1:port`` to ``target_host:target_port`` with added RTT."""

    def __init__(self, target_port: int, rtt: float, target_host: str = "127.0.0.1") -> None:
        if rtt < 0:
            raise ValueError(f"rtt must be >= 0, got {rtt}")
        self.target_host = target_host
        self.target_port = target_port
        self.rtt = rtt
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._acceptor: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the relay."""
        return f"http://127.0.0.1:{self.port}"

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
            self._forward(client, upstream)
            self._forward(upstream, client)

    def _forward(self, source: socket.socket, target: socket.socket) -> None:
        """Copy ``source`` to ``target``, each chunk held for half the RTT."""
        delay = self.rtt / 2
        pending: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def read() -> None:
            while True:
                try:
                    data = source.recv(CHUNK)
                except OSError:
                    data = b""
                pending.put((time.monotonic() + delay, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = pending.get()
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
