"""The latency relay really delays traffic, in both directions."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from session_proxy_bench.relay import Relay


@pytest.fixture(scope="module")
def http_server():
    app = Response('{"protocol": 1}', mimetype="application/json")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.mark.parametrize("rtt", [0.002, 0.02])
def test_http_round_trip_through_relay_takes_at_least_the_rtt(http_server, rtt: float) -> None:
    http = requests.Session()
    http.trust_env = False
    with Relay(http_server.server_port, rtt) as relay:
        assert http.get(relay.url + "/v1/health", timeout=10).json()["protocol"] == 1
        for _ in range(5):
            started = time.perf_counter()
            response = http.get(relay.url + "/v1/health", timeout=10)
            # A lower bound only: the request and the response each waited rtt / 2.
            assert time.perf_counter() - started >= rtt
            assert response.status_code == 200
    http.close()


def test_relay_keeps_bytes_and_order_both_ways() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    payload = bytes(range(256)) * 4096  # 1 MiB

    def echo() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    with Relay(listener.getsockname()[1], 0.001) as relay:
        with socket.create_connection(("127.0.0.1", relay.port)) as client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            received = bytearray()
            while data := client.recv(65536):
                received += data
    listener.close()
    assert bytes(received) == payload


def test_negative_rtt_is_rejected() -> None:
    with pytest.raises(ValueError, match="rtt must be >= 0"):
        Relay(1, -0.001)


def _echo_server(greeting: bytes = b"") -> socket.socket:
    """A listening loopback socket served by :func:`_serve`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    _serve(listener, greeting)
    return listener


def test_a_new_connection_pays_the_tcp_handshake() -> None:
    """Lower bounds: first exchange on a fresh connection 2 RTT, later ones 1 RTT."""
    rtt = 0.1
    listener = _echo_server()
    with Relay(listener.getsockname()[1], rtt) as relay:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", relay.port)) as client:
            client.sendall(b"first")
            assert client.recv(16) == b"first"
            first = time.perf_counter() - started
            started = time.perf_counter()
            client.sendall(b"again")
            assert client.recv(16) == b"again"
            again = time.perf_counter() - started
    listener.close()
    assert first >= 2 * rtt  # handshake (1 RTT) + request and response (1 RTT)
    assert again >= rtt


def test_a_server_greeting_arrives_two_rtts_after_connecting() -> None:
    """As a MySQL greeting would: SYN, SYN-ACK, ACK reach the server at 1.5 RTT."""
    rtt = 0.1
    listener = _echo_server(greeting=b"hello")
    with Relay(listener.getsockname()[1], rtt) as relay:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", relay.port)) as client:
            assert client.recv(16) == b"hello"
            waited = time.perf_counter() - started
    listener.close()
    assert waited >= 2 * rtt


def _serve(listener: socket.socket, greeting: bytes = b"") -> None:
    """Echo each connection's bytes back, after an optional greeting, until EOF."""

    def handle(conn: socket.socket) -> None:
        with conn:
            if greeting:
                conn.sendall(greeting)
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def _exchange(client: socket.socket, message: bytes) -> bytes:
    """Send ``message`` and read until as many bytes came back."""
    client.sendall(message)
    received = b""
    while len(received) < len(message):
        received += client.recv(65536)
    return received


def test_relay_counts_turns_and_connections() -> None:
    listener = _echo_server(greeting=b"hello")
    with Relay(listener.getsockname()[1]) as relay:
        with socket.create_connection(("127.0.0.1", relay.port)) as first:
            assert first.recv(5) == b"hello"  # the server spoke first: no turn
            for n in range(7):
                assert _exchange(first, b"ping%d" % n) == b"ping%d" % n
            with socket.create_connection(("127.0.0.1", relay.port)) as second:
                assert second.recv(5) == b"hello"
                assert _exchange(second, b"one") == b"one"
                assert relay.turns_per_connection() == [7, 1]
                assert relay.turns == 8
                assert relay.connections == 2
    listener.close()


def test_an_answer_in_several_chunks_is_one_turn() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer_in_halves() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data[:2])
                time.sleep(0.02)  # the relay reads the halves as two chunks
                conn.sendall(data[2:])

    threading.Thread(target=answer_in_halves, daemon=True).start()
    with Relay(listener.getsockname()[1]) as relay:
        with socket.create_connection(("127.0.0.1", relay.port)) as client:
            for n in range(3):
                assert _exchange(client, b"query%d" % n) == b"query%d" % n
        assert relay.turns == 3
        assert relay.counts["requests"] == 3
    listener.close()
