"""The app's plain request and response objects read and answer as Werkzeug's did."""

from __future__ import annotations

import io

import pytest
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.test import EnvironBuilder

from session_proxy_server.http_messages import PlainRequest, PlainResponse


def _environ(body: bytes, **kwargs: object) -> dict:
    return EnvironBuilder(path="/v1/pipeline", method="POST", data=body,
                          headers={"Idempotency-Key": "k-1"}, **kwargs).get_environ()


def test_headers_method_path_and_body() -> None:
    request = PlainRequest(_environ(b'{"steps": []}', content_type="application/json"), 100)
    assert request.method == "POST" and request.path == "/v1/pipeline"
    assert request.headers.get("Idempotency-Key") == "k-1"
    assert request.headers.get("content-type") == "application/json"
    assert request.headers.get("X-Missing", "0") == "0"
    assert request.get_data() == b'{"steps": []}'


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    environ = _environ(b"x" * 101)
    with pytest.raises(RequestEntityTooLarge):
        PlainRequest(environ, 100).get_data()
    assert environ["wsgi.input"].tell() == 0


def test_a_body_shorter_than_its_length_is_a_client_error() -> None:
    environ = _environ(b"x" * 10)
    environ["wsgi.input"] = io.BytesIO(b"x" * 4)
    with pytest.raises(ClientDisconnected):
        PlainRequest(environ, 100).get_data()


def test_without_a_length_werkzeug_reads_a_terminated_stream_up_to_the_limit() -> None:
    environ = _environ(b"")
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(b"y" * 50)
    environ["wsgi.input_terminated"] = True
    assert PlainRequest(environ, 100).get_data() == b"y" * 50
    # Werkzeug stops at the limit (the JSON parser then refuses the cut body).
    environ["wsgi.input"] = io.BytesIO(b"y" * 150)
    assert len(PlainRequest(environ, 100).get_data()) == 100


def test_response_headers_body_and_close_callbacks() -> None:
    response = PlainResponse(b'{"ok": true}', 409, "application/json")
    response.headers["Retry-After"] = "1"
    closed: list[bool] = []
    response.call_on_close(lambda: closed.append(True))
    started: list[tuple[str, list[tuple[str, str]]]] = []
    body = response(_environ(b""), lambda status, headers: started.append((status, headers)))
    assert started == [("409 Conflict", [("Content-Type", "application/json"),
                                         ("Content-Length", "12"), ("Retry-After", "1")])]
    assert b"".join(body) == b'{"ok": true}' and closed == []
    body.close()
    assert closed == [True]


def test_a_head_response_has_the_length_and_no_body() -> None:
    environ = EnvironBuilder(path="/v1/health", method="HEAD").get_environ()
    started: list[list[tuple[str, str]]] = []
    body = PlainResponse("{}", 200)(environ, lambda status, headers: started.append(headers))
    assert b"".join(body) == b"" and ("Content-Length", "2") in started[0]
