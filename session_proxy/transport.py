"""HTTP transport from the DBAPI shim to a session-proxy server.

One :class:`HTTPTransport` per engine: pooled keep-alive connections
(:mod:`session_proxy.connections`, on :mod:`http.client`), the request
headers built once, the handshake fetched once and cached, and the engine's
:class:`~session_proxy.stats.ProxyStats`.  It turns every way a
request can fail into an exception from :mod:`session_proxy.errors` that
says what failed and where.

Every pipeline request and logical call gets a fresh idempotency key, and
is sent again with the same key when :mod:`session_proxy.retry` says it is
worth it; the server runs a key at most once, so a retry is never a second
execution.  A transaction's follow-up requests go to the instance that
opened it when the server names one (``base_url``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from . import errors
from .config import ClientConfig
from .connections import ConnectionPools, Reply, RequestFailed
from .retry import GATEWAY_STATUSES, RETRY_CODES, RetryPolicy
from .stats import ProxyStats
from .wire import __version__, protocol
from .wire.codec import dumps, from_wire, loads
from .wire.messages import (
    ErrorBody,
    Execute,
    ExecuteMany,
    Handshake,
    SessionGrant,
    Step,
    encode_steps,
)

SERVER_TIME_HEADER = protocol.SERVER_TIME_HEADER

#: A request's own headers, as bytes: its idempotency key and retry number.
KEY_HEADER = f"{protocol.IDEMPOTENCY_KEY_HEADER}: %s\r\n".encode()
ATTEMPT_HEADER = f"{protocol.RETRY_ATTEMPT_HEADER}: %d\r\n".encode()


class HTTPTransport:
    """Sends protocol requests to one server and counts them.

    :param base_url: a :class:`~session_proxy.config.ClientConfig`, or the
        server's ``http://host:port`` / ``https://host:port`` with the
        settings below (which, when given, override those of a config).
    :param token: bearer token sent as ``Authorization`` on every request.
    :param timeout: seconds to wait for connect and for each response (default 30).
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path.
    :param retry: when to send a request again (default :class:`RetryPolicy`).
    """

    def __init__(
        self,
        base_url: str | ClientConfig,
        token: str | None = None,
        timeout: float | None = None,
        verify: bool | str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = ClientConfig.coerce(
            base_url, token=token, timeout=timeout, verify=verify, retry=retry
        )
        self.base_url = self.config.url
        self.timeout = self.config.timeout
        self.retry = self.config.retry
        self.stats = ProxyStats()
        headers = {
            "User-Agent": f"session-proxy/{__version__}",
            "Content-Type": protocol.JSON_CONTENT_TYPE,
            protocol.PROTOCOL_HEADER: str(protocol.PROTOCOL_VERSION),
        }
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        #: The headers every request carries, built once.
        self.headers: Mapping[str, str] = MappingProxyType(headers)
        # No proxy/netrc/CA lookups from the environment, ever.
        self._pools = ConnectionPools(headers.items(), self.timeout, self.config.verify)
        self._handshake: Handshake | None = None
        self._handshake_lock = threading.Lock()

    def handshake(self) -> Handshake:
        """The server's handshake, fetched on first use and cached."""
        if self._handshake is None:
            with self._handshake_lock:
                if self._handshake is None:
                    self._handshake = self._fetch_handshake()
        return self._handshake

    def _fetch_handshake(self) -> Handshake:
        url = self.base_url + protocol.HEALTH_PATH
        response = self._get_with_retries(url)
        body = self._decode(response, url)
        if response.status != 200:
            raise self._error_from(body, response, url)
        if isinstance(body, dict) and "dialect" not in body and body.get("status") == "ok":
            # The server tells only callers with a valid token what it runs.
            raise self._error_from({"error": {
                "code": protocol.UNAUTHORIZED,
                "message": "this session-proxy server requires a token: pass token=... "
                "(made by 'session-proxy-server token issue')",
            }}, response, url)
        handshake = Handshake.from_json(body)
        if handshake.protocol != protocol.PROTOCOL_VERSION:
            raise errors.ProtocolMismatch(
                f"server at {self.base_url} speaks protocol {handshake.protocol}, "
                f"this client speaks {protocol.PROTOCOL_VERSION}"
            )
        return handshake

    def _get_with_retries(self, url: str) -> Reply:
        """GET ``url`` (reads nothing from the database), retried on connection errors."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return self._send("GET", url, None)
            except (errors.ServerUnreachable, errors.ProxyTimeout):
                attempt += 1
                if not self._pause_before_retry(attempt, started):
                    raise

    def ping(self) -> None:
        """Check that the server answers its health endpoint."""
        url = self.base_url + protocol.HEALTH_PATH
        response = self._send("GET", url, None)
        if response.status != 200:
            raise errors.ServerUnreachable(
                f"session-proxy server at {url} answered HTTP {response.status}"
            )

    def pipeline(
        self,
        txn: str | None,
        steps: list[Step],
        base_url: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Send one pipeline request; return the decoded response body.

        ``base_url`` is the instance that holds ``txn`` (or the session),
        when the server named one; ``session_id`` the server session the
        request runs in (session pooling).  Raises the PEP 249 error of a
        failed database step, or a :class:`~session_proxy.errors.ProxyError`
        for anything else.
        """
        payload = dumps(protocol.pipeline_request(txn, encode_steps(steps), session_id))
        url = (base_url or self.base_url).rstrip("/") + protocol.PIPELINE_PATH
        statements = sum(
            1 for step in steps if isinstance(step, (Execute, ExecuteMany))
        )
        response, body = self.exchange(url, payload, statements)
        if response.status != 200:
            raise self._error_from(body, response, url)
        return body

    def open_session(self) -> SessionGrant:
        """Ask the server to hold a database connection for one client connection.

        Raises :class:`~session_proxy.errors.RequestRejected` when the server
        does not allow session pooling, :class:`~session_proxy.errors.ServerBusy`
        when it holds as many sessions as it may.
        """
        url = self.base_url + protocol.SESSIONS_PATH
        response, body = self.exchange(url, dumps(protocol.session_request()), 0)
        if response.status not in (200, 201):
            raise self._error_from(body, response, url)
        return SessionGrant.from_json(body)

    def close_session(self, grant: SessionGrant, retry: bool = True) -> None:
        """Release a server session (its open transaction is rolled back).

        ``retry=False`` sends one attempt (at interpreter exit).  A session
        the server closed already is not an error.
        """
        url = (
            (grant.base_url or self.base_url).rstrip("/")
            + protocol.SESSIONS_PATH + "/" + grant.session_id
        )
        if retry:
            response, body = self.exchange(url, b"", 0, method="DELETE")
        else:
            response = self._send("DELETE", url, b"")
            body = self._decode_or_none(response) or {}
        if response.status != 200 and _error_code(body) not in (
            protocol.SESSION_CLOSED, protocol.UNKNOWN_SESSION
        ):
            raise self._error_from(body, response, url)

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
        response, body = self.exchange(url, payload, 0)
        if response.status == 200:
            return values.from_wire(body.get("result"))
        error = ErrorBody.from_json(body)
        if error is not None:
            where = f" [operation {name} at {self.base_url}]"
            if error.code == protocol.OPERATION_ERROR:
                raise values.decode_exception(error.extra.get("exception") or {}, where)
            if error.code == protocol.UNKNOWN_OPERATION:
                raise errors.UnknownOperation(error.message + where)
            if error.code == protocol.BAD_ARGUMENTS:
                raise errors.OperationRejected(error.message + where)
        raise self._error_from(body, response, url)

    def exchange(
        self, url: str, payload: bytes, statements: int, method: str = "POST"
    ) -> tuple[Reply, dict[str, Any]]:
        """POST ``payload`` under a new idempotency key, retrying where worth it.

        Returns the last response and its decoded body; raises
        :class:`~session_proxy.errors.ServerUnreachable` or
        :class:`~session_proxy.errors.ProxyTimeout` when no response came
        within the retry policy.
        """
        key = secrets.token_urlsafe(18)
        started = time.monotonic()
        attempt = busy_refusals = 0
        while True:
            headers = KEY_HEADER % key.encode()
            if attempt:
                headers += ATTEMPT_HEADER % attempt
            retry_after: float | None = None
            try:
                response = self._send(method, url, payload, headers)
            except (errors.ServerUnreachable, errors.ProxyTimeout) as exc:
                outcome: Exception | tuple = exc
            else:
                self._record(payload, response, statements)
                if response.headers.get(protocol.REPLAYED_HEADER) == "true":
                    self.stats.add(replays=1)
                body = self._decode_or_none(response)
                if body is None:
                    if response.status not in GATEWAY_STATUSES:
                        body = self._decode(response, url)  # raises, naming the body
                    outcome = errors.ServerUnreachable(
                        f"{url}: a gateway answered HTTP {response.status} "
                        "instead of the session-proxy server"
                    )
                elif _error_code(body) in RETRY_CODES:
                    outcome = (response, body)
                    retry_after = _retry_after(response)
                    busy_refusals += _error_code(body) == protocol.SERVER_BUSY
                else:
                    return response, body
            attempt += 1
            if self._pause_before_retry(attempt, started, retry_after, busy_refusals):
                continue
            if isinstance(outcome, tuple):
                return outcome
            if attempt > 1:
                outcome.args = (
                    f"{outcome} (sent {attempt} times over "
                    f"{time.monotonic() - started:.1f} s under idempotency key {key}; "
                    "the server runs a key at most once)",
                )
            raise outcome

    def _pause_before_retry(
        self, attempt: int, started: float, retry_after: float | None = None,
        busy_refusals: int = 0,
    ) -> bool:
        """Wait before retry number ``attempt``; False when the policy allows no more."""
        policy = self.retry
        if not policy.allows(attempt, time.monotonic() - started, busy_refusals):
            return False
        self.stats.add(retries=1)
        time.sleep(policy.delay(attempt, retry_after))
        return True

    def _record(self, payload: bytes, response: Reply, statements: int) -> None:
        """Count one round trip, with the measurements the server reported."""
        headers = response.headers
        try:
            statements = int(headers.get(protocol.STATEMENTS_HEADER, statements))
            server_seconds = float(headers.get(SERVER_TIME_HEADER, 0.0))
            transaction_seconds = float(headers.get(protocol.TRANSACTION_TIME_HEADER, 0.0))
        except ValueError:
            server_seconds = transaction_seconds = 0.0
        self.stats.record(
            len(payload), len(response.body), statements, server_seconds, transaction_seconds
        )

    @property
    def connections_opened(self) -> int:
        """TCP connections this transport opened so far (keep-alive reuses them)."""
        return self._pools.opened

    def close(self) -> None:
        """Close pooled HTTP connections (the transport stays usable)."""
        self._pools.close()

    def _send(
        self,
        method: str,
        url: str,
        payload: bytes | None,
        headers: bytes = b"",
    ) -> Reply:
        origin, path = self._pools.target(url)
        try:
            return origin.request(method, path, payload, headers)
        except RequestFailed as exc:
            if exc.timed_out:
                kind = "ConnectTimeout" if exc.phase == "connect" else "ReadTimeout"
                raise errors.ProxyTimeout(
                    f"session-proxy server at {url} did not answer within "
                    f"{self.timeout} s ({kind})"
                ) from exc.cause
            raise errors.ServerUnreachable(
                f"cannot reach session-proxy server at {url}: {exc}"
            ) from exc.cause

    @staticmethod
    def _decode_or_none(response: Reply) -> dict[str, Any] | None:
        """The JSON object body, or None when the body is not one."""
        try:
            body = loads(response.body)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @staticmethod
    def _decode(response: Reply, url: str) -> dict[str, Any]:
        try:
            body = loads(response.body)
        except ValueError:
            raise errors.ProtocolMismatch(
                f"{url} answered HTTP {response.status} with a body that is "
                f"not JSON ({response.headers.get('Content-Type')!r}); is it a "
                "session-proxy server?"
            ) from None
        if not isinstance(body, dict):
            raise errors.ProtocolMismatch(f"{url} answered with a non-object JSON body")
        return body

    @staticmethod
    def _error_from(
        body: dict[str, Any], response: Reply, url: str
    ) -> Exception:
        error = ErrorBody.from_json(body)
        request_id = response.headers.get(protocol.REQUEST_ID_HEADER)
        if error is None:
            exc: errors.WireError = errors.ProtocolMismatch(
                f"{url} answered HTTP {response.status} without an error object"
            )
            return exc.annotate(status=response.status, request_id=request_id)
        code, message, extra = error.code, error.message, error.extra
        where = f" [{url}, request {request_id}]" if request_id else f" [{url}]"
        if code == protocol.DATABASE_ERROR:
            try:
                args = tuple(from_wire(extra.get("args", [])))
            except ValueError:
                args = (message,)
            exc = errors.database_error({"message": message, **extra}, args)
        elif code == protocol.TRANSACTION_EXPIRED:
            exc = errors.TransactionExpired(message + where)
        elif code in (protocol.UNKNOWN_TRANSACTION, protocol.WRONG_INSTANCE):
            exc = errors.TransactionLost(message + where)
        elif code in (protocol.SESSION_CLOSED, protocol.UNKNOWN_SESSION):
            exc = errors.SessionClosed(message + where)
        elif code == protocol.UNAUTHORIZED:
            exc = errors.AuthenticationFailed(message + where)
        elif code in (protocol.POLICY_VIOLATION, protocol.ISOLATION_VIOLATION):
            exc = errors.AccessDenied(
                message + where, str(extra.get("fingerprint", "")), str(extra.get("reason", ""))
            )
        elif code in (
            protocol.TOO_MANY_TRANSACTIONS, protocol.TOO_MANY_SESSIONS, protocol.SUBJECT_LIMIT,
            protocol.SHUTTING_DOWN, protocol.SERVER_BUSY,
        ):
            retry_after = response.headers.get("Retry-After")
            exc = errors.ServerBusy(
                message + where, float(retry_after) if retry_after else None
            )
            exc.code = code  # which limit: transactions, sessions, threads, shutdown
        elif code == protocol.ROWCOUNT_MISMATCH:
            exc = errors.RowcountMismatch(
                message + where, int(extra.get("expected", -1)), int(extra.get("actual", -1))
            )
        elif code == protocol.UNSUPPORTED_PROTOCOL:
            exc = errors.ProtocolMismatch(message + where)
        else:
            exc = errors.RequestRejected(
                f"{code}: {message} (HTTP {response.status}){where}"
            )
        # txn: the lease the server kept open despite the error, if any.
        return exc.annotate(
            status=response.status, txn=error.txn, step=error.step,
            request_id=request_id,
        )


def _error_code(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _retry_after(response: Reply) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
