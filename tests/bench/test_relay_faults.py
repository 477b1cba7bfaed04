"""The latency relay's fault injection, over real sockets and a real HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from session_proxy_bench.relay import Faults, Relay


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[bytes] = []  # bodies of the POSTs handled
        self.peers: list[int] = []  # client port of each POST: one per connection

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # connections the relay reset on purpose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: several requests per connection
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(body)
        self.server.peers.append(self.client_address[1])
        reply = b"ok:" + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


def _post(http: requests.Session, relay: Relay, body: bytes) -> requests.Response:
    return http.post(relay.url + "/echo", data=body, timeout=5)


def test_without_faults_requests_pass_and_are_counted(server, http) -> None:
    with Relay(server.server_port) as relay:
        for i in range(5):
            response = _post(http, relay, b"%d" % i)
            assert response.status_code == 200
            assert response.content == b"ok:%d" % i
        counts = relay.counts
    assert len(set(server.peers)) == 1  # one keep-alive connection, five requests
    assert counts == {"requests": 5, "drop_response": 0, "reset": 0, "delay": 0}


def test_drop_response_reaches_the_server_but_not_the_client(server, http) -> None:
    with Relay(server.server_port) as relay:
        assert _post(http, relay, b"first").status_code == 200
        relay.inject("drop_response")
        with pytest.raises(requests.ConnectionError):
            _post(http, relay, b"dropped")
        assert server.received == [b"first", b"dropped"]
        response = _post(http, relay, b"after")  # on a new connection
        counts = relay.counts
    assert response.content == b"ok:after"
    assert len(set(server.peers[1:])) == 2
    assert counts == {"requests": 3, "drop_response": 1, "reset": 0, "delay": 0}


def test_reset_never_reaches_the_server(server, http) -> None:
    with Relay(server.server_port) as relay:
        assert _post(http, relay, b"first").status_code == 200
        relay.inject("reset")
        with pytest.raises(requests.ConnectionError):
            _post(http, relay, b"reset")
        assert server.received == [b"first"]
        response = _post(http, relay, b"after")
        counts = relay.counts
    assert response.content == b"ok:after"
    assert server.received == [b"first", b"after"]
    assert counts == {"requests": 3, "drop_response": 0, "reset": 1, "delay": 0}


def test_reset_is_a_tcp_rst(server) -> None:
    """The client sees ECONNRESET, not an orderly end of stream."""
    with Relay(server.server_port) as relay:
        relay.inject("reset")
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
            client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
            with pytest.raises(ConnectionResetError):
                client.recv(1024)
    assert server.received == []


def test_drop_response_is_a_tcp_rst(server) -> None:
    with Relay(server.server_port) as relay:
        relay.inject("drop_response")
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
            client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
            with pytest.raises(ConnectionResetError):
                client.recv(1024)
    assert server.received == [b"x"]


def test_delay_is_counted_and_the_request_succeeds(server, http) -> None:
    with Relay(server.server_port, faults=Faults(delay_seconds=0.3)) as relay:
        relay.inject("delay")
        response = _post(http, relay, b"slow")
        counts = relay.counts
    assert response.content == b"ok:slow"
    assert counts == {"requests": 1, "drop_response": 0, "reset": 0, "delay": 1}


def test_injected_faults_apply_in_order_then_stop(server, http) -> None:
    with Relay(server.server_port) as relay:
        relay.inject("reset")
        relay.inject("drop_response", count=2)
        outcomes = []
        for i in range(4):
            try:
                _post(http, relay, b"%d" % i)
                outcomes.append("ok")
            except requests.ConnectionError:
                outcomes.append("error")
        counts = relay.counts
    assert outcomes == ["error", "error", "error", "ok"]
    assert server.received == [b"1", b"2", b"3"]  # the reset one never arrived
    assert counts == {"requests": 4, "drop_response": 2, "reset": 1, "delay": 0}


def test_random_drops_still_reach_the_server(server) -> None:
    sent = 40
    errors = 0
    with Relay(server.server_port, faults=Faults(drop_response=0.5, seed=1)) as relay:
        for i in range(sent):
            with requests.Session() as http:
                http.trust_env = False
                try:
                    _post(http, relay, b"%d" % i)
                except requests.ConnectionError:
                    errors += 1
        counts = relay.counts
    assert 0 < counts["drop_response"] < sent
    assert errors == counts["drop_response"]
    assert len(server.received) == sent
    assert counts["requests"] == sent


def test_a_seed_repeats_the_same_faults(server) -> None:
    def run() -> list[bool]:
        failed = []
        with Relay(server.server_port, faults=Faults(reset=0.5, seed=7)) as relay:
            for i in range(12):
                with requests.Session() as http:
                    http.trust_env = False
                    try:
                        _post(http, relay, b"%d" % i)
                        failed.append(False)
                    except requests.ConnectionError:
                        failed.append(True)
        return failed

    first = run()
    assert any(first) and not all(first)
    assert run() == first


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop_response": -0.1}, "Faults.drop_response must be in 0..1"),
        ({"reset": 1.5}, "Faults.reset must be in 0..1"),
        ({"delay": float("nan")}, "Faults.delay must be in 0..1"),
        ({"delay": "0.5"}, "Faults.delay must be a number"),
        ({"drop_response": 0.6, "reset": 0.6}, r"drop_response \+ Faults.reset"),
        ({"delay_seconds": -1}, "Faults.delay_seconds must be a finite number >= 0"),
        ({"delay_seconds": float("inf")}, "Faults.delay_seconds"),
        ({"seed": 1.5}, "Faults.seed must be an int or None"),
    ],
)
def test_faults_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults(**kwargs)  # type: ignore[arg-type]


def test_faults_are_frozen() -> None:
    faults = Faults(reset=0.1)
    with pytest.raises(AttributeError):
        faults.reset = 0.2  # type: ignore[misc]


def test_inject_rejects_unknown_kinds_and_bad_counts() -> None:
    relay = Relay(1)
    try:
        with pytest.raises(ValueError, match="drop_response, reset, delay"):
            relay.inject("timeout")
        with pytest.raises(ValueError, match="count must be an int >= 1"):
            relay.inject("reset", count=0)
    finally:
        relay.stop()
