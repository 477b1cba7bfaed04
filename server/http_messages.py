"""The request and response objects of the WSGI app, kept to what it uses.

Werkzeug's ``Request`` and ``Response`` cost about a tenth of the server's
CPU per pipeline request (a header object per request and per response,
the response's header normalisation, its iterator wrappers).  The app reads
a few headers, the path, the method and one body, and answers one byte
string with a handful of headers, so :class:`PlainRequest` reads the WSGI
environ directly and :class:`PlainResponse` hands ``start_response`` its
header list as is.

Bodies are read the way Werkzeug reads them: a ``Content-Length`` above
the limit is refused with 413 before anything is read, a body shorter than
it said is a 400 (:class:`~werkzeug.exceptions.ClientDisconnected`); a
request without ``Content-Length`` (chunked, which only some servers pass
through) is read by Werkzeug's own ``Request``, limit included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request as WerkzeugRequest


class EnvironHeaders:
    """Read-only request headers looked up in the WSGI environ by name."""

    __slots__ = ("_environ",)

    def __init__(self, environ: dict) -> None:
        self._environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self._environ.get(key)
        return default if value is None else value


class PlainRequest:
    """One request, read from its WSGI environ."""

    __slots__ = ("environ", "headers", "max_content_length")

    def __init__(self, environ: dict, max_content_length: int | None = None) -> None:
        self.environ = environ
        self.headers = EnvironHeaders(environ)
        self.max_content_length = max_content_length

    @property
    def method(self) -> str:
        return self.environ.get("REQUEST_METHOD", "GET").upper()

    @property
    def path(self) -> str:
        return "/" + self.environ.get("PATH_INFO", "").lstrip("/")

    def get_data(self, cache: bool = False) -> bytes:
        """The body; 413 past :attr:`max_content_length`, 400 when cut short."""
        length_text = self.environ.get("CONTENT_LENGTH")
        if not length_text:
            return self._werkzeug_body()
        try:
            length = int(length_text)
        except ValueError:
            return self._werkzeug_body()
        if length < 0:
            return self._werkzeug_body()
        if self.max_content_length is not None and length > self.max_content_length:
            raise RequestEntityTooLarge()
        if length == 0:
            return b""
        data = self.environ["wsgi.input"].read(length)
        if len(data) < length:
            raise ClientDisconnected()
        return data

    def _werkzeug_body(self) -> bytes:
        request = WerkzeugRequest(self.environ)
        request.max_content_length = self.max_content_length
        return request.get_data(cache=False)


class _Body(list):
    """The response iterable; the server calls :meth:`close` once it is written."""

    def __init__(self, body: bytes, on_close: list[Callable[[], Any]]) -> None:
        super().__init__((body,))
        self._on_close = on_close

    def close(self) -> None:
        for callback in self._on_close:
            callback()


class PlainResponse:
    """A response whose body is one byte string."""

    __slots__ = ("body", "status_code", "content_type", "headers", "_on_close")

    def __init__(self, body: bytes | str, status: int = 200,
                 content_type: str = "application/json") -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.status_code = status
        self.content_type = content_type
        #: Extra response headers, by name.
        self.headers: dict[str, str] = {}
        self._on_close: list[Callable[[], Any]] = []

    @property
    def mimetype(self) -> str:
        return self.content_type.split(";", 1)[0].strip()

    def get_data(self) -> bytes:
        return self.body

    def call_on_close(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` when the server closes the response (after writing it)."""
        self._on_close.append(callback)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        code = self.status_code
        status = f"{code} {HTTP_STATUS_CODES.get(code, 'UNKNOWN')}"
        headers = [("Content-Type", self.content_type),
                   ("Content-Length", str(len(self.body)))]
        headers.extend(self.headers.items())
        start_response(status, headers)
        body = b"" if environ.get("REQUEST_METHOD") == "HEAD" else self.body
        if self._on_close:
            return _Body(body, self._on_close)
        return (body,)
