"""The session-proxy WSGI application.

:func:`create_app` builds one :class:`ProxyServer` for one database: a real
SQLAlchemy engine (the only place database credentials live), the lease
registry and its reaper, the executor, and the :class:`~session_proxy_server.security.Gate`
that authenticates callers and applies their role's policy.  Requests flow::

    WSGI -> ProxyServer.__call__ -> Gate.authenticate -> route handler
         -> Gate.check_caller -> statement_guard -> session_guard -> Gate.check_statements
            / check_operation -> Executor -> driver

Every error leaves as JSON ``{"error": {"code", "message", ...}}`` with the
status :data:`session_proxy.wire.protocol.ERROR_STATUS` gives it; nothing raised
inside a handler reaches the client as a traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule

from session_proxy.wire import __version__, protocol
from session_proxy.wire.codec import dumps, from_wire, loads
from session_proxy.wire.errors import ProtocolError
from session_proxy.wire.messages import Handshake, SessionGrant
from session_proxy.wire.protocol import SERVER_TIME_HEADER

from . import after_response, backends, expanded_steps, requests_validation
from .admission import Admission
from .auth import AuthError, Claims
from .config import ServerConfig
from .database import create_engine_for
from .executor import Executor
from .expanded_steps import checked
from .http_messages import PlainRequest, PlainResponse
from .leases import LeaseError, LeaseRegistry
from .metrics import Metrics, access_log, log_request
from .operations import OperationFailed, OperationHost
from .options import ConnectionOptions
from .outcomes import OutcomeStore, request_digest
from .security import ANONYMOUS, Gate
from .sessions import SessionRegistry
from .sql import session_guard
from .sql import text_guard as statement_guard
from .sql.policy import PolicyViolation
from .sql.session_guard import IsolationViolation

log = logging.getLogger("session_proxy.server")

#: The WSGI environ key of the client's request id header.
_REQUEST_ID_ENVIRON = "HTTP_" + protocol.REQUEST_ID_HEADER.upper().replace("-", "_")


class ProxyServer:
    """The WSGI callable: routes, error handling, metrics."""

    def __init__(
        self,
        engine: Engine,
        config: ServerConfig,
        gate: Gate,
        operation_modules: Iterable[str] = (),
        trusted_clients: bool = False,
    ) -> None:
        self.engine = engine
        #: What differs by database (see :mod:`session_proxy_server.backends`).
        self.backend = backends.for_engine(engine)
        self.config = config
        self.gate = gate
        self.outcomes = OutcomeStore(
            engine, config.outcome_window_seconds, config.outcome_memory_bytes
        )
        self.operations = OperationHost(
            engine, operation_modules, trusted_clients, self.outcomes
        )
        self.registry = LeaseRegistry(
            engine,
            lease_seconds=config.lease_seconds,
            max_open=config.max_transactions,
            expired_memory_seconds=config.expired_memory_seconds,
            lock_wait_seconds=config.lock_wait_seconds,
            max_per_subject=config.max_transactions_per_subject,
            max_transaction_seconds=config.max_transaction_seconds,
            statement_timeout_seconds=config.statement_timeout_seconds,
            instance=config.instance_name,
        )
        #: Held sessions (session pooling), when the server allows them.
        self.sessions = SessionRegistry(
            self.registry,
            enabled=config.session_pooling,
            max_open=config.max_sessions,
            max_per_subject=config.sessions_per_subject,
            idle_seconds=config.session_idle_seconds,
            closed_memory_seconds=config.expired_memory_seconds,
        )
        self.executor = Executor(
            self.registry,
            config.page_size,
            engine.dialect.loaded_dbapi.Error,
            engine.dialect.driver,
            config.statement_timeout_seconds,
            self.outcomes,
            engine.dialect.loaded_dbapi.IntegrityError,
        )
        self.executor.base_url = config.advertise_url or None
        #: Set by :meth:`drain`: no new transactions, health answers 503.
        self.draining = False
        #: TCP connections the HTTP server accepted (it counts them here).
        self.http_connections = 0
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        #: Keeps a thread within reach of every open transaction (see
        #: :mod:`session_proxy_server.admission`); the command line tells it
        #: how many threads the HTTP server runs.
        self.admission = Admission(lambda: self._in_flight, self.registry.idle_count)
        self.handshake = self._build_handshake()
        self.connection_options = ConnectionOptions.for_engine(engine)
        self.url_map = Map(
            [
                Rule(protocol.HEALTH_PATH, endpoint="health", methods=["GET"]),
                Rule(protocol.PIPELINE_PATH, endpoint="pipeline", methods=["POST"]),
                Rule(protocol.METRICS_PATH, endpoint="metrics", methods=["GET"]),
                Rule(protocol.SESSIONS_PATH, endpoint="open_session", methods=["POST"]),
                Rule(
                    protocol.SESSIONS_PATH + "/<session_id>",
                    endpoint="close_session",
                    methods=["DELETE"],
                ),
                Rule(
                    protocol.OPERATIONS_PREFIX + "<name>", endpoint="operation", methods=["POST"]
                ),
            ]
        )
        #: Routes without arguments by (method, path): no URL map per request.
        self._static_routes: dict[tuple[str, str], str] = {
            ("GET", protocol.HEALTH_PATH): "health",
            ("POST", protocol.PIPELINE_PATH): "pipeline",
            ("GET", protocol.METRICS_PATH): "metrics",
            ("POST", protocol.SESSIONS_PATH): "open_session",
        }
        self._handlers: dict[str, Callable[..., PlainResponse]] = {
            "health": self.on_health,
            "pipeline": self.on_pipeline,
            "metrics": self.on_metrics,
            "operation": self.on_operation,
            "open_session": self.on_open_session,
            "close_session": self.on_close_session,
        }
        self.metrics = Metrics()
        self.registry.start_reaper()
        self.sessions.start_reaper()
        self.outcomes.start_purger()

    def _build_handshake(self) -> Handshake:
        dialect = self.engine.dialect
        with self.engine.connect() as connection:
            dbapi_conn = connection.connection.dbapi_connection
            charset = self.backend.handshake_charset(dbapi_conn)
        return Handshake(
            protocol=protocol.PROTOCOL_VERSION,
            dialect=dialect.name,
            driver=dialect.driver,
            server_version_info=tuple(dialect.server_version_info or ()),
            paramstyle=dialect.paramstyle,
            server_version=(
                f"session-proxy {__version__} "
                f"(SQLAlchemy {sqlalchemy.__version__})"
            ),
            page_size=self.config.page_size,
            max_body_bytes=self.config.max_body_bytes,
            lease_seconds=self.config.lease_seconds,
            charset=charset,
            capabilities=(
                "pipeline", "fetch", "leases", "operations",
                *(("sessions",) if self.config.session_pooling else ()),
            ),
        )

    # -- WSGI -----------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        request = PlainRequest(environ, self.config.max_body_bytes)
        request_id = _request_id(environ.get(_REQUEST_ID_ENVIRON))
        endpoint = "unknown"
        claims: Claims | None = None
        with self._in_flight_lock:
            self._in_flight += 1
        after_response.begin()
        try:
            static = self._static_routes.get(
                (environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
            )
            if static is not None:
                endpoint, arguments = static, {}
            else:
                endpoint, arguments = self.url_map.bind_to_environ(environ).match()
            authorization = environ.get("HTTP_AUTHORIZATION")
            if endpoint == "health" and authorization is None:
                claims = ANONYMOUS
            else:
                # Health checks a token it is given, so clients learn early.
                claims = self.gate.authenticate(authorization)
            response = self._handlers[endpoint](request, claims, **arguments)
        except AuthError as exc:
            log.warning("request %s refused: %s", request_id, exc.reason)
            response = self.error(protocol.UNAUTHORIZED, f"authentication failed: {exc.reason}")
            response.headers["WWW-Authenticate"] = 'Bearer realm="session-proxy"'
        except RecursionError:
            response = self.error(protocol.BAD_REQUEST, "request body nests too deeply")
        except HTTPException as exc:
            code = {404: protocol.NOT_FOUND, 405: protocol.METHOD_NOT_ALLOWED}.get(
                exc.code or 400, protocol.BAD_REQUEST
            )
            response = self.error(code, f"{request.method} {request.path}: {exc.description}")
            response.status_code = exc.code or 400
        except Exception:  # noqa: BLE001 - the client gets JSON, the log gets the traceback
            log.exception("request %s failed", request_id)
            response = self.error(
                protocol.INTERNAL_ERROR, f"internal server error (request {request_id})"
            )
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
        after_response.attach(response)
        seconds = time.perf_counter() - started
        response.headers[protocol.REQUEST_ID_HEADER] = request_id
        response.headers[SERVER_TIME_HEADER] = f"{seconds:.6f}"
        self.metrics.observe(endpoint, response.status_code, seconds)
        if access_log.isEnabledFor(logging.INFO):  # nothing built when it is off
            log_request(
                request_id=request_id,
                method=request.method,
                path=request.path,
                status=response.status_code,
                seconds=round(seconds, 6),
                subject=claims.subject if claims is not None else None,
                role=claims.role if claims is not None else None,
                error=_error_code(response),
            )
        return response(environ, start_response)

    @staticmethod
    def json_response(body: dict[str, Any], status: int = 200) -> PlainResponse:
        """A JSON response (NaN/Infinity never appear: the codec tags them)."""
        return PlainResponse(dumps(body), status, protocol.JSON_CONTENT_TYPE)

    @staticmethod
    def encoded_response(payload: bytes, status: int, replayed: bool) -> PlainResponse:
        """A JSON body already encoded; ``replayed`` marks an answer from a record."""
        response = PlainResponse(payload, status, protocol.JSON_CONTENT_TYPE)
        if replayed:
            response.headers[protocol.REPLAYED_HEADER] = "true"
        return response

    def error(self, code: str, message: str, **extra: Any) -> PlainResponse:
        """An error response with the protocol's status for ``code``."""
        return self.json_response(
            protocol.error_body(code, message, **extra), protocol.ERROR_STATUS[code]
        )

    # -- endpoints --------------------------------------------------------------

    def on_health(self, request: PlainRequest, claims: Claims) -> PlainResponse:
        """Liveness; 503 while draining, so balancers move on.

        Only a caller with a valid token (or any caller when authentication
        is off) gets the handshake: database and SQLAlchemy versions help an
        attacker pick exploits, so anonymous callers learn up or draining.
        """
        if self.draining:
            return self.shutting_down()
        if self.gate.authenticates and request.headers.get("Authorization") is None:
            return self.json_response({"status": "ok", "protocol": protocol.PROTOCOL_VERSION})
        return self.json_response(self.handshake.to_json())

    def shutting_down(self) -> PlainResponse:
        """503 ``shutting_down``: nothing ran, the client may go elsewhere."""
        response = self.error(
            protocol.SHUTTING_DOWN,
            f"server instance {self.registry.instance!r} is shutting down and takes "
            "no new transactions; retry (another instance, or this one once restarted)",
        )
        response.headers["Retry-After"] = "1"
        return response

    def server_busy(self) -> PlainResponse:
        """503 ``server_busy``: nothing ran; answered at once, not queued in a thread."""
        threads = self.admission.threads
        response = self.error(
            protocol.SERVER_BUSY,
            f"server instance {self.registry.instance!r} is busy: of its {threads} "
            "threads, those not kept free for the next requests of open transactions "
            "are all in use; nothing ran, retry shortly",
        )
        response.headers["Retry-After"] = "0"
        return response

    def on_pipeline(self, request: PlainRequest, claims: Claims) -> PlainResponse:
        """Run one pipeline request (see :mod:`session_proxy.wire.protocol`)."""
        body = self._json_body(request)
        if isinstance(body, PlainResponse):
            return body
        try:
            key = requests_validation.check_idempotency_key(
                request.headers.get(protocol.IDEMPOTENCY_KEY_HEADER)
            )
            txn, steps = requests_validation.parse_pipeline_request(body)
            self.connection_options.check(steps)
            # Cheapest first: who may run anything, then the text guard
            # (every backend, with or without a policy), then the policy.
            # Prologue and script statements are checked like execute steps.
            dialect = self.backend.lexer_dialect
            view, origin = expanded_steps.guard_view(steps, dialect)
            checked(view, origin, lambda v: self.gate.check_caller(claims, v))
            checked(view, origin, statement_guard.check_steps, dialect,
                    self.engine.dialect.driver)
            checked(view, origin, session_guard.check_steps, dialect)
            checked(view, origin, lambda v: self.gate.check_statements(claims, v, dialect))
            # What the guards let through must still be one setting per entry.
            expanded_steps.check_sessions(steps, dialect)
            requests_validation.decode_step_params(steps, from_wire)
            statement_guard.check_params(steps)
            if self.draining and txn is None:
                return self.shutting_down()
            if txn is None and not self.admission.enter():
                return self.server_busy()
        except statement_guard.UnsafeStatement as exc:
            log.warning("subject %r: %s", claims.subject, exc)
            return self.error(exc.code, str(exc), refused_step=exc.step, txn=txn)
        except ProtocolError as exc:
            return self.error(exc.code, str(exc))
        except PolicyViolation as exc:
            # "refused_step", not "step": no step of this request ran.
            return self.refuse(claims, exc, refused_step=exc.step, txn=txn)
        except IsolationViolation as exc:
            log.warning("subject %r refused (%s): %s", claims.subject, exc.reason, exc.message)
            return self.error(protocol.ISOLATION_VIOLATION, exc.message, reason=exc.reason,
                              refused_step=exc.step, txn=txn)
        owner = (claims.subject, claims.role)
        session_id = body.get("session_id")
        try:
            session = None if session_id is None else self.sessions.find(session_id, owner)
            if session is not None and _runs_statements(steps):
                session.touch()  # only work keeps a session from being idle
            reply = self.executor.run(
                txn, steps, owner, key,
                retry=_retry_attempt(request) > 0, digest=_digest(request), session=session,
            )
        except LeaseError as exc:
            return self.lease_error(exc)
        except (NotImplementedError, KeyError) as exc:
            return self.error(
                protocol.BAD_REQUEST,
                f"connection option not supported by the {self.engine.dialect.name} "
                f"backend: {exc}",
            )
        response = self.encoded_response(reply.body, reply.status, reply.replayed)
        if reply.transaction_seconds is not None:
            response.headers[protocol.TRANSACTION_TIME_HEADER] = f"{reply.transaction_seconds:.6f}"
        return response

    def lease_error(self, exc: LeaseError) -> PlainResponse:
        """The error response of a transaction or session that cannot be used."""
        response = self.error(exc.code, str(exc))
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    def on_open_session(self, request: PlainRequest, claims: Claims) -> PlainResponse:
        """Hold a database connection for the calling client connection (session pooling)."""
        body = self._json_body(request)
        if isinstance(body, PlainResponse):
            return body
        try:
            key = requests_validation.check_idempotency_key(
                request.headers.get(protocol.IDEMPOTENCY_KEY_HEADER)
            )
            requests_validation.parse_session_request(body)
        except ProtocolError as exc:
            return self.error(exc.code, str(exc))
        if self.draining:
            return self.shutting_down()
        if not self.admission.enter():
            return self.server_busy()
        try:
            session, new = self.sessions.open((claims.subject, claims.role), key)
        except LeaseError as exc:
            return self.lease_error(exc)
        except sqlalchemy.exc.DBAPIError as exc:
            return self.error(
                protocol.DATABASE_ERROR,
                f"could not connect to the database for a session: {exc.orig}",
                dbapi_class="OperationalError", args=[str(exc.orig)],
            )
        grant = SessionGrant(
            session.id,
            self.config.session_idle_seconds,
            instance=self.registry.instance,
            base_url=self.executor.base_url,
        )
        return self.json_response(grant.to_json(), 201 if new else 200)

    def on_close_session(
        self, request: PlainRequest, claims: Claims, session_id: str
    ) -> PlainResponse:
        """Close the caller's session: roll back, reset, pool the connection again."""
        try:
            self.sessions.close(session_id, (claims.subject, claims.role))
        except LeaseError as exc:
            return self.lease_error(exc)
        return self.json_response({"closed": True})

    def _json_body(self, request: PlainRequest) -> Any:
        """The decoded JSON body, or the error response to send instead."""
        version = request.headers.get(protocol.PROTOCOL_HEADER)
        if version is not None and version != str(protocol.PROTOCOL_VERSION):
            return self.error(
                protocol.UNSUPPORTED_PROTOCOL,
                f"client speaks protocol {version}, this server speaks "
                f"{protocol.PROTOCOL_VERSION}",
            )
        try:
            raw = request.get_data(cache=False)
            request.environ[_DIGEST_KEY] = request_digest(request.method, request.path, raw)
        except RequestEntityTooLarge:
            return self.error(
                protocol.TOO_LARGE,
                f"request body exceeds the server's limit of "
                f"{self.config.max_body_bytes} bytes",
            )
        try:
            return loads(raw)
        except ValueError as exc:
            return self.error(protocol.BAD_REQUEST, f"request body is not valid JSON: {exc}")

    def refuse(self, claims: Claims, exc: PolicyViolation, **extra: Any) -> PlainResponse:
        """403 for a policy violation, naming the statement's fingerprint."""
        log.warning("subject %r refused: %s", claims.subject, exc.message)
        return self.error(
            protocol.POLICY_VIOLATION,
            exc.message,
            fingerprint=exc.fingerprint,
            reason=exc.reason,
            **extra,
        )

    def on_operation(self, request: PlainRequest, claims: Claims, name: str) -> PlainResponse:
        """Run one logical operation in one transaction."""
        try:
            self.gate.check_operation(claims, name)
        except PolicyViolation as exc:
            return self.refuse(claims, exc)
        body = self._json_body(request)
        if isinstance(body, PlainResponse):
            return body
        if self.draining:
            return self.shutting_down()
        try:
            key = requests_validation.check_idempotency_key(
                request.headers.get(protocol.IDEMPOTENCY_KEY_HEADER)
            )
        except ProtocolError as exc:
            return self.error(exc.code, str(exc))
        if not self.admission.enter():
            return self.server_busy()
        try:
            outcome = self.operations.call(
                name, body, claims.subject, key, retry=_retry_attempt(request) > 0,
                role=claims.role, digest=_digest(request),
            )
        except OperationFailed as exc:
            response = self.error(exc.code, str(exc), **exc.extra)
            statements, transaction_seconds = exc.statements, exc.transaction_seconds
        else:
            response = self.encoded_response(outcome.payload, outcome.status, outcome.replayed)
            statements, transaction_seconds = outcome.statements, outcome.transaction_seconds
        response.headers[protocol.STATEMENTS_HEADER] = str(statements)
        if transaction_seconds is not None:
            response.headers[protocol.TRANSACTION_TIME_HEADER] = f"{transaction_seconds:.6f}"
        return response

    def on_metrics(self, request: PlainRequest, claims: Claims) -> PlainResponse:
        """Prometheus text exposition of the server's counters (for allowed roles)."""
        try:
            self.gate.check_metrics(claims)
        except PolicyViolation as exc:
            return self.refuse(claims, exc)
        text = self.metrics.exposition([
            ("session_proxy_statements_total", "counter", "Statements executed.",
             lambda: self.executor.statements),
            ("session_proxy_open_transactions", "gauge", "Leased connections right now.",
             lambda: len(self.registry)),
            ("session_proxy_lease_expiries_total", "counter",
             "Transactions rolled back idle or open too long.",
             lambda: self.registry.expired_count),
            ("session_proxy_replayed_total", "counter",
             "Retried requests answered from the record of an earlier attempt.",
             lambda: self.outcomes.replays),
            ("session_proxy_outcome_memory_bytes", "gauge",
             "Bytes of answers the in-memory outcome store holds for retries.",
             lambda: self.outcomes.held_bytes),
            ("session_proxy_requests_in_flight", "gauge", "Requests being handled now.",
             lambda: self._in_flight),
            ("session_proxy_admitted_total", "counter",
             "Requests starting a transaction (or running outside one) let in.",
             lambda: self.admission.admitted),
            ("session_proxy_refused_busy_total", "counter",
             "Requests starting a transaction refused with 503 server_busy: the "
             "threads left were kept for open transactions' next requests.",
             lambda: self.admission.refused_busy),
            ("session_proxy_draining", "gauge", "1 while the server shuts down.",
             lambda: int(self.draining)),
            ("session_proxy_http_connections_total", "counter",
             "TCP connections the HTTP server accepted.", lambda: self.http_connections),
            ("session_proxy_token_verifications_total", "counter",
             "Token signatures checked (tokens not answered from the verdict cache).",
             lambda: self.gate.verifier.verifications if self.gate.verifier else 0),
            ("session_proxy_token_cache_entries", "gauge",
             "Accepted tokens whose verdicts the server keeps.",
             lambda: len(self.gate.verifier.cache) if self.gate.verifier else 0),
            ("session_proxy_open_sessions", "gauge",
             "Sessions holding a database connection (session pooling).",
             lambda: len(self.sessions)),
            ("session_proxy_sessions_closed_by_server_total", "counter",
             "Sessions the server closed: idle too long, connection lost, shutdown.",
             lambda: self.sessions.closed_count),
            ("session_proxy_session_resets_total", "counter",
             "Session resets run on their own between transactions.",
             lambda: self.registry.resets_run),
            ("session_proxy_session_resets_with_commit_total", "counter",
             "Session resets done in the commit's round trip (PostgreSQL).",
             lambda: self.registry.resets_with_commit),
        ])
        return PlainResponse(text, 200, "text/plain; version=0.0.4; charset=utf-8")

    def drain(self, timeout: float | None = None) -> bool:
        """Stop taking new transactions; wait for work in flight to finish.

        Requests on open transactions still run, so they can commit, until
        no request is in flight and no transaction is open, or ``timeout``
        (default ``drain_seconds``) passes.  Returns whether everything
        finished; :meth:`close` rolls back what did not.
        """
        self.draining = True
        deadline = time.monotonic() + (
            self.config.drain_seconds if timeout is None else timeout
        )
        while time.monotonic() < deadline:
            with self._in_flight_lock:
                in_flight = self._in_flight
            if in_flight == 0 and len(self.registry) == 0:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Roll back open transactions, stop the reaper, dispose the pool."""
        self.registry.shutdown()
        self.sessions.shutdown()
        self.executor.watchdog.stop()
        self.outcomes.stop()
        self.engine.dispose()


#: Where :meth:`ProxyServer._json_body` leaves the digest of the body it read.
_DIGEST_KEY = "session_proxy.request_digest"


#: A client's own X-Request-Id, echoed and logged only when it looks like one.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _request_id(sent: str | None) -> str:
    """The client's request id if it is short and plain, else a new one.

    It goes into the response header and every log line of the request, so a
    long or odd one (log bloat, forged log lines) is replaced, not repeated.
    """
    if sent is not None and _CLIENT_REQUEST_ID.fullmatch(sent):
        return sent
    return secrets.token_hex(8)


#: Steps that do work on a session's connection (not only end a transaction).
_STATEMENT_STEPS = frozenset({protocol.EXECUTE, protocol.EXECUTE_MANY, protocol.EXECUTE_SCRIPT,
                              protocol.FETCH})


def _runs_statements(steps: list[dict[str, Any]]) -> bool:
    """Whether a pipeline request runs a statement or reads rows."""
    return any(step.get("op") in _STATEMENT_STEPS for step in steps)


def _digest(request: PlainRequest) -> str:
    """The digest of the request whose body was read (see :func:`request_digest`)."""
    return request.environ.get(_DIGEST_KEY, "")


def _retry_attempt(request: PlainRequest) -> int:
    """The client's retry attempt number (0 on a first attempt or when unsaid)."""
    try:
        return max(0, int(request.headers.get(protocol.RETRY_ATTEMPT_HEADER, "0")))
    except ValueError:
        return 0


def _error_code(response: PlainResponse) -> str | None:
    """The protocol error code of an error response, for the access log."""
    if response.status_code < 400 or response.mimetype != protocol.JSON_CONTENT_TYPE:
        return None
    try:
        return loads(response.get_data())["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def create_app(
    db_url: str,
    gate: Gate,
    config: ServerConfig | None = None,
    operations: Iterable[str] = (),
    sqlite_attach: dict[str, str] | None = None,
    trusted_clients: bool = False,
    **settings: Any,
) -> ProxyServer:
    """Build the WSGI app for ``db_url``.

    ``gate`` authenticates callers and applies the policy;
    ``Gate(verifier=None)`` lets everyone in.  ``operations`` names the
    modules whose ``@remote_operation`` functions the server exposes.
    ``sqlite_attach`` maps schema names to SQLite files attached to every
    pooled connection.  ``trusted_clients`` lets logical calls carry pickled
    (dill) arguments, which gives every client code execution on the server.
    ``settings`` are :class:`~session_proxy_server.config.ServerConfig` fields
    (``lease_seconds=30``, ``page_size=1000``, ...), used when ``config`` is
    not given.
    """
    config = config or ServerConfig(**settings)
    engine = create_engine_for(db_url, config, sqlite_attach or {})
    return ProxyServer(engine, config, gate, operations, trusted_clients)
