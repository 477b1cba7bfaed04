"""The HTTP servers ``session-proxy-server`` runs the WSGI app on.

By default (plain HTTP) the app runs on **waitress**: one event loop reads
every connection and buffers a whole request (line, headers, body) before a
thread of a bounded pool runs the app, so a slow or silent client holds a
socket, never a thread.  HTTP/1.1 keep-alive is on.  The command-line bounds
map onto it:

- ``--socket-timeout``: a connection with no activity for that long (a
  request, its headers or body not arriving, or a keep-alive connection
  left idle) is closed (waitress ``channel_timeout``, checked every
  a tenth of the timeout);
- ``--max-connections``: connections held open at once; at the limit the
  server stops accepting and new connections wait in the kernel's listen
  queue (back-pressure), then are accepted as others end;
- ``--threads``: the worker pool; requests beyond it queue, one per
  connection at most (a connection is not read further while its request
  waits).

Waitress has no TLS, so with ``--tls-cert``/``--tls-self-signed`` the app
runs on **cheroot** (also keep-alive, for up to ``--max-connections``
connections; bounded pool; ``--socket-timeout`` as its socket timeout);
there a connection that sends half a request holds a thread until the
timeout.  docs/serving.md has the measurements behind the
choice.  Werkzeug's development server, which closes every connection after
one response, is still there behind ``--dev-server``.

Every server here serves pre-bound listening sockets (:func:`listen_socket`),
which is what lets ``--workers`` give each worker process a private port
and a share of the public one (see :mod:`.workers`).
"""

from __future__ import annotations

import dataclasses
import resource
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

#: Defaults of ``--socket-timeout``, ``--max-connections`` and ``--threads``.
SOCKET_TIMEOUT = 15.0
MAX_CONNECTIONS = 2000
THREADS = 16
#: Listen queue length: connections waiting to be accepted.
BACKLOG = 1024


@dataclasses.dataclass(frozen=True)
class ServingOptions:
    """How to serve: bounds, TLS, and which server."""

    threads: int = THREADS
    socket_timeout: float = SOCKET_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    #: (certificate, key) files and their checked context, for HTTPS.
    tls: tuple[Path, Path, ssl.SSLContext] | None = None
    dev_server: bool = False


class Server(Protocol):
    """What the command line drives: serve until :meth:`stop` (from another thread)."""

    def serve_forever(self) -> None: ...

    def stop(self) -> None: ...


def listen_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; ``reuse_port`` lets sibling processes bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def raise_file_limit(connections: int) -> None:
    """Lift the soft open-file limit so ``connections`` sockets fit (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def make_server(
    app: Any,
    sockets: list[socket.socket],
    options: ServingOptions,
    on_connection: Callable[[], None] = lambda: None,
) -> Server:
    """The server for ``app`` on ``sockets``; ``on_connection`` runs once per accepted one."""
    raise_file_limit(options.max_connections)
    if options.dev_server:
        if len(sockets) != 1:
            raise ValueError("--dev-server serves one socket (no --workers)")
        return _DevServer(app, sockets[0], options, on_connection)
    if options.tls:
        return _CherootServer(app, sockets, options, on_connection)
    return _WaitressServer(app, sockets, options, on_connection)


class _WaitressServer:
    """waitress on pre-bound sockets."""

    def __init__(self, app: Any, sockets: list[socket.socket], options: ServingOptions,
                 on_connection: Callable[[], None]) -> None:
        import waitress
        from waitress.channel import HTTPChannel
        from waitress.server import BaseWSGIServer

        class CountingChannel(HTTPChannel):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                on_connection()
                super().__init__(*args, **kwargs)

        self._server = waitress.create_server(
            app,
            sockets=sockets,
            threads=options.threads,
            # waitress counts its listening sockets and its wake-up pipe too
            connection_limit=options.max_connections + len(sockets) + 1,
            channel_timeout=options.socket_timeout,
            cleanup_interval=max(0.2, min(30.0, options.socket_timeout / 10)),
            asyncore_use_poll=True,  # select() stops at 1,024 descriptors
            backlog=BACKLOG,
            ident="session-proxy",
        )
        self._map: dict = getattr(self._server, "map", None) or self._server._map
        for dispatcher in list(self._map.values()):
            if isinstance(dispatcher, BaseWSGIServer):
                dispatcher.channel_class = CountingChannel

    def serve_forever(self) -> None:
        try:
            self._server.run()
        finally:
            self._server.task_dispatcher.shutdown()

    def stop(self) -> None:
        # Close every socket on the loop's own thread; the loop ends when
        # none is left.
        from waitress import wasyncore

        def leave() -> None:
            wasyncore.close_all(self._map, ignore_all=True)

        for dispatcher in list(self._map.values()):
            if hasattr(dispatcher, "pull_trigger"):
                dispatcher.pull_trigger(leave)
                return


class _CherootServer:
    """cheroot with TLS, one cheroot server per pre-bound socket."""

    def __init__(self, app: Any, sockets: list[socket.socket], options: ServingOptions,
                 on_connection: Callable[[], None]) -> None:
        from cheroot.ssl.builtin import BuiltinSSLAdapter
        from cheroot.wsgi import Server as WSGIServer

        assert options.tls is not None
        cert, key, context = options.tls

        class CountingAdapter(BuiltinSSLAdapter):
            def wrap(self, sock: socket.socket) -> Any:
                on_connection()
                return super().wrap(sock)

        class PreboundServer(WSGIServer):
            def __init__(self, sock: socket.socket) -> None:
                super().__init__(
                    sock.getsockname()[:2],
                    app,
                    numthreads=options.threads,
                    timeout=options.socket_timeout,
                    request_queue_size=BACKLOG,
                    server_name="session-proxy",
                )
                self._prebound = sock
                # cheroot's default keeps 10 connections alive, closes the rest
                self.keep_alive_conn_limit = options.max_connections

            def bind(self, family: int, type: int, proto: int = 0) -> socket.socket:
                # cheroot's own bind() sets TCP_NODELAY, which accepted
                # connections inherit.  Without it Nagle's algorithm holds a
                # response's second write (cheroot writes headers and body
                # apart) until the client's delayed ACK: about 40 ms a request.
                if self.nodelay:
                    self._prebound.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.socket = self._prebound
                return self._prebound

        self._servers = []
        for sock in sockets:
            server = PreboundServer(sock)
            adapter = CountingAdapter(str(cert), str(key))
            adapter.context = context  # the checked one: TLS 1.2 at least
            server.ssl_adapter = adapter
            self._servers.append(server)

    def serve_forever(self) -> None:
        threads = [threading.Thread(target=server.safe_start, daemon=True)
                   for server in self._servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def stop(self) -> None:
        for server in self._servers:
            server.stop()


class _DevServer:
    """Werkzeug's threaded development server (``--dev-server``): no keep-alive."""

    def __init__(self, app: Any, sock: socket.socket, options: ServingOptions,
                 on_connection: Callable[[], None]) -> None:
        host, port = sock.getsockname()[:2]
        self._server = BoundedWSGIServer(
            host,
            port,
            app,
            handler_with_timeout(options.socket_timeout),
            ssl_context=options.tls[2] if options.tls else None,
            fd=sock.fileno(),
            max_connections=options.max_connections,
            on_connection=on_connection,
        )
        self._socket = sock  # keep the descriptor open

    def serve_forever(self) -> None:
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()


class BoundedWSGIServer(ThreadedWSGIServer):
    """Werkzeug's threaded server with at most ``max_connections`` threads.

    Each connection gets a thread; at the bound, the server stops accepting
    until one ends, and new connections wait in the listen queue.
    """

    def __init__(self, *args: Any, max_connections: int = 256,
                 on_connection: Callable[[], None] = lambda: None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.on_connection = on_connection
        self._slots = threading.BoundedSemaphore(max_connections)
        ssl_socket = getattr(self.socket, "do_handshake_on_connect", None)
        if ssl_socket is not None:
            # Handshake in the connection's thread, under its timeout.
            self.socket.do_handshake_on_connect = False

    def process_request(self, request: Any, client_address: Any) -> None:
        # Wait for a free slot before the next accept; the listen queue holds the rest.
        self._slots.acquire()
        self.on_connection()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
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
