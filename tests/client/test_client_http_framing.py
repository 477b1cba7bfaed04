"""The client's HTTP layer against a scripted HTTP/1.1 server on loopback.

Some answers the real server gives only under rare conditions (409
``transaction_busy`` without ``Retry-After``, a gateway's HTML 502, a
chunked body from a proxy in front): a small :mod:`http.server` plays them
in order, over real sockets, and counts the connections and requests it
saw, so each test checks the transport's reading of them, its retries, and
that keep-alive survives them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from session_proxy import RetryPolicy, errors
from session_proxy.transport import HTTPTransport
from session_proxy.wire import protocol

#: (status, headers, body, chunked) answers, played in order.
Answer = tuple[int, dict[str, str], bytes, bool]


class _Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: list[Answer] = []
        self.requests: list[dict[str, str]] = []
        self.connections = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Scripted

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(dict(self.headers))
        status, headers, body, chunked = self.server.answers.pop(0)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 7):
                piece = body[start:start + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[_Scripted]:
    server = _Scripted()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _transport(server: _Scripted, attempts: int = 3) -> HTTPTransport:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return HTTPTransport(
        url, token="tok", retry=RetryPolicy(attempts=attempts, first_delay=0.0, max_delay=0.0)
    )


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


BUSY = (409, {"Content-Type": "application/json"},
        _json({"error": {"code": protocol.TRANSACTION_BUSY, "message": "busy"}}), False)


def test_busy_without_retry_after_is_retried_under_the_same_key(scripted: _Scripted) -> None:
    scripted.answers = [BUSY, (200, {"Content-Type": "application/json"},
                               _json({"results": [], "txn": "t1"}), False)]
    transport = _transport(scripted)
    body = transport.pipeline("t1", [])
    assert body == {"results": [], "txn": "t1"}
    first, second = scripted.requests
    key = protocol.IDEMPOTENCY_KEY_HEADER
    assert first[key] == second[key]
    assert protocol.RETRY_ATTEMPT_HEADER not in first
    assert second[protocol.RETRY_ATTEMPT_HEADER] == "1"
    assert first["Authorization"] == "Bearer tok"
    assert first["User-Agent"].startswith("session-proxy/")
    assert transport.stats.retries == 1 and transport.stats.round_trips == 2
    assert scripted.connections == 1 and transport.connections_opened == 1
    transport.close()


def test_a_chunked_body_is_read_whole_and_the_connection_kept(scripted: _Scripted) -> None:
    payload = {"results": [{"rows": [[i, "x" * i] for i in range(40)]}], "txn": None}
    scripted.answers = [(200, {}, _json(payload), True), (200, {}, _json(payload), False)]
    transport = _transport(scripted)
    assert transport.pipeline(None, []) == payload
    assert transport.pipeline(None, []) == payload
    assert scripted.connections == 1
    assert transport.stats.response_bytes == 2 * len(_json(payload))
    transport.close()


def test_a_gateway_page_is_server_unreachable_after_the_retries(scripted: _Scripted) -> None:
    page = (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>", False)
    scripted.answers = [page, page, page]
    transport = _transport(scripted, attempts=3)
    with pytest.raises(errors.ServerUnreachable, match="a gateway answered HTTP 502"):
        transport.pipeline("t1", [])
    assert len(scripted.requests) == 3 and transport.stats.retries == 2
    transport.close()


def test_a_non_json_answer_names_its_status_and_type(scripted: _Scripted) -> None:
    scripted.answers = [(404, {"Content-Type": "text/plain"}, b"nope", False)]
    transport = _transport(scripted)
    with pytest.raises(errors.ProtocolMismatch, match=r"HTTP 404 .*'text/plain'"):
        transport.pipeline("t1", [])
    transport.close()


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",
    ],
)
def test_a_negative_length_is_refused_not_read_to_the_end(response: bytes) -> None:
    """A negative size would read until the server closes: refuse it instead."""
    import io
    from http.client import HTTPException

    from session_proxy.http11 import read_response

    with pytest.raises(HTTPException):
        read_response(io.BufferedReader(io.BytesIO(response)), "POST")  # type: ignore[arg-type]
