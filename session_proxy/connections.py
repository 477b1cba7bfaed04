"""Pooled keep-alive HTTP/1.1 connections from the client to its servers.

The client's hot path: every proxied statement and logical call is one
request here.  It sits directly on sockets and :mod:`ssl`, with nothing per
request that can be done once: the TLS context, the parsed address and each URL's path are made once
and cached; idle connections wait in a per-origin pool and are reused while
the server keeps them open; the headers every request carries are encoded
once, and the request line, headers and body leave in one ``send``; the
response is parsed by :func:`session_proxy.http11.read_response` from a
buffered reader kept with the socket, and its body read once, as bytes.

What this module does not do, on purpose: follow redirects, read proxy or
CA settings from the environment, or compress.  A failed request raises
:class:`RequestFailed`, saying whether it failed while connecting or after
the request may have reached the server, and whether it timed out;
:mod:`session_proxy.transport` turns that into the errors of
:mod:`session_proxy.errors`.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .http11 import Headers, read_response

#: Idle connections kept per origin; more may be open at once, the extra
#: ones are closed when they come back.
POOL_SIZE = 64

#: URLs whose (origin, path) split is remembered; beyond it, split each time.
URL_CACHE_SIZE = 1024


@dataclass(frozen=True)
class Reply:
    """One HTTP response: ``status``, case-insensitive ``headers``, the whole ``body``."""

    status: int
    headers: Headers
    body: bytes


class RequestFailed(Exception):
    """No response came for a request.

    :param phase: ``"connect"`` (no request was sent: refused, DNS, TLS
        handshake, connect timeout) or ``"response"`` (the request may have
        reached the server: reset, closed, read timeout, malformed answer).
    :param timed_out: whether the failure was the client's timeout.
    :param cause: the underlying exception.
    """

    def __init__(self, phase: str, timed_out: bool, cause: BaseException) -> None:
        super().__init__(f"{phase} failed: {cause}")
        self.phase = phase
        self.timed_out = timed_out
        self.cause = cause


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS context for ``verify``, as ``requests`` (with ``trust_env=False``) built it.

    ``True`` trusts certifi's CA bundle (what ``requests`` uses; the system's
    default CAs when certifi is absent), a path trusts that CA bundle file
    or directory, ``False`` checks neither certificate nor host name.
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        return ssl.create_default_context(cafile=_default_ca_bundle())
    if not os.path.exists(verify):
        raise OSError(
            f"Could not find a suitable TLS CA certificate bundle, invalid path: {verify}"
        )
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def _default_ca_bundle() -> str | None:
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return None
    return certifi.where()


class Origin:
    """Keep-alive connections to one ``scheme://host:port``.

    :param host: host name or address.
    :param port: TCP port.
    :param host_header: the ``Host`` header's value.
    :param headers: headers every request carries (validated and encoded once).
    :param timeout: seconds for connecting and for each read.
    :param context: the TLS context, for ``https``; None for ``http``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        host_header: str,
        headers: Iterable[tuple[str, str]],
        timeout: float,
        context: ssl.SSLContext | None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.context = context
        #: TCP connections opened so far.
        self.opened = 0
        self._fixed = encode_headers(
            [("Host", host_header), ("Accept-Encoding", "identity"), *headers]
        )
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def request(
        self, method: str, path: str, body: bytes | None, headers: bytes = b""
    ) -> Reply:
        """Send one request on a pooled connection and read its whole response.

        ``headers`` are this request's own, from :func:`encode_headers`.
        """
        body = body or b""
        message = b"".join((
            f"{method} {path} HTTP/1.1\r\n".encode("latin-1"),
            self._fixed,
            headers,
            b"Content-Length: %d\r\n\r\n" % len(body),
            body,
        ))
        conn = self._checkout()
        try:
            conn.sock.sendall(message)  # request line, headers and body in one send
            status, reply_headers, data, keep_alive = read_response(conn.rfile, method)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RequestFailed("response", isinstance(exc, TimeoutError), exc) from exc
        except BaseException:
            conn.close()
            raise
        if keep_alive:
            self._checkin(conn)
        else:
            conn.close()
        return Reply(status, reply_headers, data)

    def close(self) -> None:
        """Close the idle connections (ones in use close when they come back)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _checkout(self) -> _Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if _still_open(conn.sock):
                return conn
            conn.close()

    def _checkin(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < POOL_SIZE:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), self.timeout)
        except OSError as exc:
            raise RequestFailed("connect", isinstance(exc, TimeoutError), exc) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except OSError as exc:
            sock.close()
            raise RequestFailed("connect", isinstance(exc, TimeoutError), exc) from exc
        with self._lock:
            self.opened += 1
        return _Connection(sock)


class _Connection:
    """One open socket and the buffered reader its responses are read from."""

    __slots__ = ("sock", "rfile")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    """``Name: value\\r\\n`` lines, refusing names and values that would break framing."""
    lines = []
    for name, value in headers:
        if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n\0"):
            raise ValueError(f"invalid HTTP header {name!r}: {value!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


def _still_open(sock: socket.socket) -> bool:
    """Whether an idle connection may be reused: nothing (an EOF, a reset) waiting on it."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


class ConnectionPools:
    """One :class:`Origin` per server address, and each URL split once.

    :param headers: headers every request carries.
    :param timeout: seconds for connecting and for each read.
    :param verify: TLS verification for ``https`` URLs (see :func:`ssl_context`).
    """

    def __init__(
        self, headers: Iterable[tuple[str, str]], timeout: float, verify: bool | str
    ) -> None:
        self.headers = tuple(headers)
        encode_headers(self.headers)  # refuse a bad header now, not on first use
        self.timeout = timeout
        self.verify = verify
        self._context: ssl.SSLContext | None = None
        self._origins: dict[tuple[str, str, int], Origin] = {}
        self._targets: dict[str, tuple[Origin, str]] = {}
        self._lock = threading.Lock()

    def target(self, url: str) -> tuple[Origin, str]:
        """The pool and request path for ``url`` (cached)."""
        found = self._targets.get(url)
        if found is not None:
            return found
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        key = (parts.scheme, parts.hostname, port)
        with self._lock:
            origin = self._origins.get(key)
            if origin is None:
                context = self._tls_context() if https else None
                host_header = parts.netloc.rpartition("@")[2]
                origin = Origin(
                    parts.hostname, port, host_header, self.headers, self.timeout, context
                )
                self._origins[key] = origin
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            if len(self._targets) < URL_CACHE_SIZE:
                self._targets[url] = (origin, path)
        return origin, path

    @property
    def opened(self) -> int:
        """TCP connections opened so far, over all origins."""
        with self._lock:
            return sum(origin.opened for origin in self._origins.values())

    def close(self) -> None:
        """Close every idle connection; the pools stay usable."""
        with self._lock:
            origins = list(self._origins.values())
        for origin in origins:
            origin.close()

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl_context(self.verify)
        return self._context
