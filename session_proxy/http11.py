"""Reading one HTTP/1.1 response off a keep-alive connection.

:func:`read_response` parses the status line, the header block and the body
(``Content-Length``, ``chunked``, or until the connection closes) from a
buffered reader over the socket, and says whether the connection may carry
another request.  It does what :class:`http.client.HTTPResponse` does for
this client without the :mod:`email` parser underneath, which was most of
the client's CPU per request.  Malformed or cut-short responses raise the
same :class:`http.client.HTTPException` subclasses ``http.client`` raises.
"""

from __future__ import annotations

from http.client import (
    BadStatusLine,
    HTTPException,
    IncompleteRead,
    LineTooLong,
    RemoteDisconnected,
)
from typing import BinaryIO

#: Longest status or header line accepted, as in :mod:`http.client`.
MAX_LINE = 65536

#: Most header lines accepted, as in :mod:`http.client`.
MAX_HEADERS = 100


class Headers(dict[str, str]):
    """Response headers by lower-case name; :meth:`get` takes any case.

    Repeated headers are joined with ``", "``.
    """

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, name.lower(), default)


def read_response(rfile: BinaryIO, method: str) -> tuple[int, Headers, bytes, bool]:
    """``(status, headers, body, keep_alive)`` of the next response on ``rfile``."""
    while True:
        status, version = _status_line(rfile)
        headers = _headers(rfile)
        if not 100 <= status < 200:
            break  # 1xx interim answers (100 Continue) carry no body: skip them
    tokens = {t.strip().lower() for t in (headers.get("connection") or "").split(",")}
    keep_alive = "keep-alive" in tokens if version == b"HTTP/1.0" else "close" not in tokens
    if method == "HEAD" or status in (204, 304):
        return status, headers, b"", keep_alive
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        return status, headers, _chunked(rfile), keep_alive
    length = headers.get("content-length")
    if length is None:
        return status, headers, rfile.read(), False  # the body ends with the connection
    try:
        size = int(length)
    except ValueError:
        raise HTTPException(f"bad Content-Length {length!r}") from None
    if size < 0:
        raise HTTPException(f"bad Content-Length {length!r}")
    return status, headers, _exactly(rfile, size), keep_alive


def _line(rfile: BinaryIO) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise LineTooLong("header line")
    return line


def _status_line(rfile: BinaryIO) -> tuple[int, bytes]:
    line = _line(rfile)
    if not line:
        raise RemoteDisconnected("Remote end closed connection without response")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise BadStatusLine(repr(line))
    try:
        status = int(parts[1])
    except ValueError:
        raise BadStatusLine(repr(line)) from None
    if not 100 <= status <= 999:
        raise BadStatusLine(repr(line))
    return status, parts[0]


def _headers(rfile: BinaryIO) -> Headers:
    headers = Headers()
    for _ in range(MAX_HEADERS + 1):
        line = _line(rfile)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, colon, value = line.partition(b":")
        if not colon:
            raise HTTPException(f"malformed header line {line!r}")
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    raise HTTPException(f"got more than {MAX_HEADERS} headers")


def _exactly(rfile: BinaryIO, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise IncompleteRead(data, size - len(data))
    return data


def _chunked(rfile: BinaryIO) -> bytes:
    pieces = []
    while True:
        line = _line(rfile)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise IncompleteRead(b"".join(pieces)) from None
        if size < 0:
            raise IncompleteRead(b"".join(pieces))
        if size == 0:
            break
        pieces.append(_exactly(rfile, size))
        _line(rfile)  # the CRLF after the chunk
    while _line(rfile) not in (b"\r\n", b"\n", b""):
        pass  # trailers: ignored
    return b"".join(pieces)
