"""HTTPS serving (cheroot on a pre-bound socket) turns Nagle's algorithm off.

cheroot writes a response's headers and body apart; with Nagle on, the
second write waits for the client's delayed ACK, about 40 ms a request.
cheroot's own ``bind`` sets TCP_NODELAY on the listening socket, which
accepted connections inherit; the server binds its sockets itself, so it
must set it too.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import requests

from session_proxy_server.serving import ServingOptions, listen_socket, make_server
from session_proxy_server.tls import generate_self_signed, server_ssl_context


def hello(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def test_https_connections_are_served_with_tcp_nodelay(tmp_path: Path) -> None:
    cert, key = generate_self_signed(tmp_path)
    sock = listen_socket("127.0.0.1", 0)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # the kernel's default
    options = ServingOptions(tls=(cert, key, server_ssl_context(cert, key)))
    server = make_server(hello, [sock], options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = sock.getsockname()[1]
        with requests.Session() as client:
            client.trust_env = False
            answer = client.get(f"https://127.0.0.1:{port}/", verify=str(cert), timeout=30)
        assert answer.text == "hello"
        # Served: the socket connections are accepted from has Nagle off.
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.stop()
        thread.join(timeout=10)
        sock.close()
