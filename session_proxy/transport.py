"""HTTP transport from the DBAPI shim to a session-proxy server.

One :class:`HTTPTransport` per engine: a :class:`requests.Session` with
keep-alive connections, the handshake fetched once and cached, and the
engine's :class:`~session_proxy.stats.ProxyStats`.  It turns every way a
request can fail into an exception from :mod:`session_proxy.errors` that
says what failed and where.
"""

from __future__ import annotations

import threading
from typing import Any

import requests

from . import errors, protocol
from .codec import dumps, from_wire, loads
from .stats import ProxyStats

SERVER_TIME_HEADER = protocol.SERVER_TIME_HEADER


class HTTPTransport:
    """Sends protocol requests to one server and counts them.

    :param base_url: ``http://host:port`` or ``https://host:port``.
    :param token: bearer token sent as ``Authorization`` on every request.
    :param timeout: seconds to wait for connect and for each response.
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.stats = ProxyStats()
        self._http = requests.Session()
        # No proxy/netrc/CA lookups from the environment on every request.
        self._http.trust_env = False
        self._http.verify = verify
        self._http.headers.update(
            {
                "Content-Type": protocol.JSON_CONTENT_TYPE,
                protocol.PROTOCOL_HEADER: str(protocol.PROTOCOL_VERSION),
            }
        )
        if token:
            self._http.headers["Authorization"] = f"Bearer {token}"
        self._pipeline_url = self.base_url + protocol.PIPELINE_PATH
        self._handshake: protocol.Handshake | None = None
        self._handshake_lock = threading.Lock()

    def handshake(self) -> protocol.Handshake:
        """The server's handshake, fetched on first use and cached."""
        if self._handshake is None:
            with self._handshake_lock:
                if self._handshake is None:
                    self._handshake = self._fetch_handshake()
        return self._handshake

    def _fetch_handshake(self) -> protocol.Handshake:
        url = self.base_url + protocol.HEALTH_PATH
        response = self._send("GET", url, None)
        body = self._decode(response, url)
        if response.status_code != 200:
            raise self._error_from(body, response, url)
        handshake = protocol.Handshake.from_json(body)
        if handshake.protocol != protocol.PROTOCOL_VERSION:
            raise errors.ProtocolMismatch(
                f"server at {self.base_url} speaks protocol {handshake.protocol}, "
                f"this client speaks {protocol.PROTOCOL_VERSION}"
            )
        return handshake

    def ping(self) -> None:
        """Check that the server answers its health endpoint."""
        url = self.base_url + protocol.HEALTH_PATH
        response = self._send("GET", url, None)
        if response.status_code != 200:
            raise errors.ServerUnreachable(
                f"session-proxy server at {url} answered HTTP {response.status_code}"
            )

    def pipeline(self, txn: str | None, steps: list[dict]) -> dict[str, Any]:
        """Send one pipeline request; return the decoded response body.

        Raises the PEP 249 error of a failed database step, or a
        :class:`~session_proxy.errors.ProxyError` for anything else.
        """
        payload = dumps(protocol.pipeline_request(txn, steps))
        response = self._send("POST", self._pipeline_url, payload)
        statements = sum(
            1 for step in steps if step["op"] in (protocol.EXECUTE, protocol.EXECUTE_MANY)
        )
        self._record(payload, response, statements)
        body = self._decode(response, self._pipeline_url)
        if response.status_code != 200:
            raise self._error_from(body, response, self._pipeline_url)
        return body

    def call_operation(self, name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """Run logical operation ``name`` on the server; return its decoded result.

        Raises the operation's own exception (rebuilt by
        :func:`session_proxy.values.decode_exception`), or a
        :class:`~session_proxy.errors.ProxyError`.
        """
        from . import values

        payload = dumps(
            protocol.operation_request(
                [values.to_wire(a) for a in args],
                {k: values.to_wire(v) for k, v in kwargs.items()},
            )
        )
        url = self.base_url + protocol.OPERATIONS_PREFIX + name
        response = self._send("POST", url, payload)
        self._record(payload, response, 0)
        body = self._decode(response, url)
        if response.status_code == 200:
            return values.from_wire(body.get("result"))
        error = body.get("error")
        if isinstance(error, dict):
            where = f" [operation {name} at {self.base_url}]"
            if error.get("code") == protocol.OPERATION_ERROR:
                raise values.decode_exception(error.get("exception") or {}, where)
            if error.get("code") == protocol.UNKNOWN_OPERATION:
                raise errors.UnknownOperation(str(error.get("message")) + where)
            if error.get("code") == protocol.BAD_ARGUMENTS:
                raise errors.OperationRejected(str(error.get("message")) + where)
        raise self._error_from(body, response, url)

    def _record(self, payload: bytes, response: requests.Response, statements: int) -> None:
        """Count one round trip, with the measurements the server reported."""
        headers = response.headers
        try:
            statements = int(headers.get(protocol.STATEMENTS_HEADER, statements))
            server_seconds = float(headers.get(SERVER_TIME_HEADER, 0.0))
            transaction_seconds = float(headers.get(protocol.TRANSACTION_TIME_HEADER, 0.0))
        except ValueError:
            server_seconds = transaction_seconds = 0.0
        self.stats.record(
            len(payload), len(response.content), statements, server_seconds, transaction_seconds
        )

    def close(self) -> None:
        """Close pooled HTTP connections."""
        self._http.close()

    def _send(self, method: str, url: str, payload: bytes | None) -> requests.Response:
        try:
            return self._http.request(method, url, data=payload, timeout=self.timeout)
        except requests.Timeout as exc:
            raise errors.ProxyTimeout(
                f"session-proxy server at {url} did not answer within "
                f"{self.timeout} s ({exc.__class__.__name__})"
            ) from exc
        except requests.RequestException as exc:
            raise errors.ServerUnreachable(
                f"cannot reach session-proxy server at {url}: {exc}"
            ) from exc

    @staticmethod
    def _decode(response: requests.Response, url: str) -> dict[str, Any]:
        try:
            body = loads(response.content)
        except ValueError:
            raise errors.ProtocolMismatch(
                f"{url} answered HTTP {response.status_code} with a body that is "
                f"not JSON ({response.headers.get('Content-Type')!r}); is it a "
                "session-proxy server?"
            ) from None
        if not isinstance(body, dict):
            raise errors.ProtocolMismatch(f"{url} answered with a non-object JSON body")
        return body

    @staticmethod
    def _error_from(
        body: dict[str, Any], response: requests.Response, url: str
    ) -> Exception:
        error = body.get("error")
        request_id = response.headers.get(protocol.REQUEST_ID_HEADER)
        if not isinstance(error, dict):
            exc: Exception = errors.ProtocolMismatch(
                f"{url} answered HTTP {response.status_code} without an error object"
            )
            exc.request_id = request_id  # type: ignore[attr-defined]
            return exc
        code = error.get("code")
        message = str(error.get("message", ""))
        txn = error.get("txn")
        where = f" [{url}, request {request_id}]" if request_id else f" [{url}]"
        if code == protocol.DATABASE_ERROR:
            try:
                args = tuple(from_wire(error.get("args", [])))
            except ValueError:
                args = (message,)
            exc = errors.database_error(error, args)
        elif code == protocol.TRANSACTION_EXPIRED:
            exc = errors.TransactionExpired(message + where)
        elif code == protocol.UNKNOWN_TRANSACTION:
            exc = errors.TransactionLost(message + where)
        elif code == protocol.UNAUTHORIZED:
            exc = errors.AuthenticationFailed(message + where)
        elif code == protocol.POLICY_VIOLATION:
            exc = errors.AccessDenied(
                message + where, str(error.get("fingerprint", "")), str(error.get("reason", ""))
            )
        elif code in (protocol.TOO_MANY_TRANSACTIONS, protocol.SUBJECT_LIMIT):
            retry_after = response.headers.get("Retry-After")
            exc = errors.ServerBusy(
                message + where, float(retry_after) if retry_after else None
            )
        elif code == protocol.ROWCOUNT_MISMATCH:
            exc = errors.RowcountMismatch(
                message + where, int(error.get("expected", -1)), int(error.get("actual", -1))
            )
        elif code == protocol.UNSUPPORTED_PROTOCOL:
            exc = errors.ProtocolMismatch(message + where)
        else:
            exc = errors.RequestRejected(
                f"{code}: {message} (HTTP {response.status_code}){where}"
            )
        exc.request_id = request_id  # type: ignore[attr-defined]
        exc.status = response.status_code  # type: ignore[attr-defined]
        # The lease the server kept open despite the error, if any.
        exc.server_txn = txn if isinstance(txn, str) else None  # type: ignore[attr-defined]
        step = error.get("step")
        exc.step_index = step if type(step) is int else None  # type: ignore[attr-defined]
        return exc
