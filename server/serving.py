"""The built-in HTTP server, bounded against slow and idle clients.

``session-proxy-server`` serves the WSGI app with Werkzeug's threaded
server, which by itself starts one thread per connection and waits for a
client's request line, headers and body for ever: 1,000 half-open requests
made 1,003 threads.  :func:`bounded_server` adds two limits:

- **a socket timeout** (``--socket-timeout``): a connection that sends
  nothing for that long while the server waits for a request, its headers
  or its body (or lets a keep-alive connection sit idle) is closed; so is
  one that stops reading a response.  The TLS handshake runs in the
  connection's thread under the same timeout, not in the accept loop.
- **a bound on connection threads** (``--max-connections``): when that many
  connections are being served, the server stops accepting until one ends;
  new connections wait in the listen queue, which the kernel bounds.

A client that sends one byte just inside every timeout can still hold a
thread; the serving issue that follows puts a buffering front end (or an
event-driven server) before the app.  See docs/security.md, "Resource
limits".
"""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

#: Defaults of ``--socket-timeout`` and ``--max-connections``.
SOCKET_TIMEOUT = 15.0
MAX_CONNECTIONS = 256


class BoundedWSGIServer(ThreadedWSGIServer):
    """Werkzeug's threaded server with at most ``max_connections`` threads."""

    def __init__(self, *args: Any, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active = 0
        self._active_lock = threading.Lock()
        ssl_socket = getattr(self.socket, "do_handshake_on_connect", None)
        if ssl_socket is not None:
            # Handshake in the connection's thread, under its timeout.
            self.socket.do_handshake_on_connect = False

    @property
    def active_connections(self) -> int:
        """Connections being served right now."""
        return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        # Wait for a free slot before the next accept; the listen queue holds the rest.
        self._slots.acquire()
        with self._active_lock:
            self._active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._active_lock:
            self._active -= 1
        self._slots.release()


def handler_with_timeout(seconds: float) -> type[WSGIRequestHandler]:
    """Werkzeug's request handler with a socket timeout of ``seconds``."""

    class TimedRequestHandler(WSGIRequestHandler):
        timeout = seconds

        def setup(self) -> None:
            super().setup()
            self.connection.settimeout(seconds)
            handshake = getattr(self.connection, "do_handshake", None)
            if handshake is not None:
                handshake()  # TLS, under the timeout (see BoundedWSGIServer)

        def handle(self) -> None:
            try:
                super().handle()
            except OSError:
                pass  # a slow or vanished client: its connection is closed

    return TimedRequestHandler


def bounded_server(
    host: str,
    port: int,
    app: Any,
    ssl_context: Any = None,
    socket_timeout: float = SOCKET_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> BoundedWSGIServer:
    """A threaded server for ``app`` with both bounds."""
    return BoundedWSGIServer(
        host,
        port,
        app,
        handler_with_timeout(socket_timeout),
        ssl_context=ssl_context,
        max_connections=max_connections,
    )
