"""The session-proxy wire protocol, defined once for client and server.

Everything is JSON over HTTP.  Values inside messages (parameters, rows, error
arguments) are encoded with :mod:`session_proxy.wire.codec`.

``GET /v1/health``
    Liveness and handshake.  Without a token it answers only ``{"status":
    "ok", "protocol": 1}`` (503 ``shutting_down`` while draining); with a
    valid token (the client sends one) it adds the handshake: backend
    dialect and driver, server version info, paramstyle and the server's
    limits (see :class:`Handshake`).  A bad token is 401.

``GET /v1/metrics``
    Prometheus text, for the roles allowed to read it (``--metrics-role``,
    default ``admin``, or ``"metrics": true`` in the policy); others get 403.

``POST /v1/pipeline``
    ``{"protocol": 1, "txn": null | ID, "steps": [STEP, ...]}`` runs the steps
    in order on one server-held connection and answers ``{"txn": ID | null,
    "results": [RESULT, ...]}``.  A request without ``txn`` leases a new
    connection; the answer names it, and later requests send that id back.
    ``commit``/``rollback`` end the lease.  Steps:

    - ``{"op": "begin", "options": {...}}`` sets connection options
      (``isolation_level``: one of :data:`ISOLATION_LEVELS` the backend has;
      ``read_only``, ``deferrable``: booleans, PostgreSQL only) for the lease;
      allowed only as the first step of a request that opens the lease.
      ``"session": [S, ...]`` (optional) lists session-level statements
      (``SET ...``, ``PRAGMA ...``) the client connection ran in its
      ``connect`` event: the server runs them first on the leased connection,
      each through the same guards as an ``execute`` step, so they hold in
      every transaction although connections are pooled per transaction (the
      reset between leases undoes them).  At most
      :data:`MAX_SESSION_STATEMENTS` statements and
      :data:`MAX_SESSION_BYTES` bytes of UTF-8; a failing one fails step 0.
    - ``{"op": "execute_script", "sql": S}`` (SQLite only): sqlite3's
      ``executescript``; the server splits ``S`` into statements where
      SQLite would (``sqlite3.complete_statement``), checks each like an
      ``execute`` step and runs them in order.  Its result has no rows.

    A step may carry only the fields listed here (:data:`STEP_FIELDS`), each
    of its type; anything else is a 400 naming the field, and nothing runs.
    - ``{"op": "execute", "sql": S, "params": P}`` and
      ``{"op": "execute_many", "sql": S, "seq_of_params": [P, ...]}``.
      The result carries ``description``, ``rowcount``, ``lastrowid``, up to
      one page of ``rows`` and, when more rows remain, a ``cursor`` id.
      ``"tagged": [i, ...]`` lists the columns whose values may be tagged
      (:func:`session_proxy.wire.codec.encode_rows`); without it every value is
      plain JSON.  Either may carry ``"expect_rowcount": N`` and ``"check_group": G``:
      consecutive steps with the same group are a rowcount check; once the
      group's last step has run, the sum of their rowcounts must equal the
      sum of their expected counts, or the request fails with
      ``rowcount_mismatch`` (naming both sums) before any later step runs.
      Pipelined flushes use this to move the ORM's stale-data check to the
      server.
    - ``{"op": "fetch", "cursor": C, "n": N}`` returns up to N more rows and
      ``"done": true`` once the cursor is exhausted and closed.
    - ``{"op": "close", "cursor": C}`` closes a server-side cursor early.
    - ``{"op": "commit"}`` / ``{"op": "rollback"}`` end the transaction and
      return the connection to the server's pool.

    A failing step stops the pipeline: the error names the step index, the
    lease stays open (unless it was lost) and earlier results are discarded.

``POST /v1/sessions`` and ``DELETE /v1/sessions/<id>`` (session pooling)
    A server started with ``--session-pooling`` holds one database
    connection per open session, for the life of the client connection
    that opened it (PgBouncer's ``pool_mode = session``): temporary tables
    and session settings persist across its transactions.  ``POST`` (body
    ``{"protocol": 1}``) answers 201 with a :class:`SessionGrant`
    (``session_id``, ``idle_seconds``, and ``instance``/``base_url`` of the
    instance holding it, where every later request of the session goes).
    Pipeline requests of the session carry ``"session_id": ID``: a request
    without ``txn`` leases the session's own connection, whose state is not
    reset between its transactions.  ``DELETE`` rolls back an open
    transaction, resets the connection and returns it to the shared pool.
    A server without the flag answers ``session_pooling_disabled`` (400);
    an id that is not the caller's ``unknown_session`` (404); a session the
    server closed (idle past ``idle_seconds``, its connection lost, the
    server restarted) ``session_closed`` (410) saying why.

``POST /v1/operations/<name>``
    ``{"protocol": 1, "args": [...], "kwargs": {...}}`` runs one logical
    operation in one transaction and answers ``{"result": ...}``.  Values use
    :mod:`session_proxy.values` (the codec plus ORM instances).  An exception
    raised by the operation answers ``operation_error`` with ``exception``:
    its type name, message and args.

Idempotency and retries: a client sends ``Idempotency-Key: K`` (a random
key of its own, one per request) on pipeline and operation requests, and the
same key on every retry of that request, with ``X-Retry-Attempt: N``.  The
server never runs one key twice: a retry of a request that already ran on
an open transaction gets that request's recorded response; a commit, or a
logical call, that wrote anything records its response in the database in
the same transaction (table ``session_proxy_outcomes``), so a retry after a
lost response, even on a restarted server, gets the recorded outcome, and
an unknown key on a gone transaction means it did not commit.  Replayed
responses carry ``X-Idempotent-Replay: true``.  A record answers only the
request that made it: same subject, same role and the same method, path
and body bytes; a key that names another request is 409
``idempotency_conflict`` and nothing runs.

Instances: a transaction id names the server instance that holds it
(``INSTANCE-BOOT-RANDOM``); the response that opens a transaction also
carries ``instance`` and, when the server was given one, ``base_url``: the
address of that instance, where the client sends the transaction's
follow-up requests.  An instance that gets a request for another instance's
transaction answers 421 ``wrong_instance``; one that restarted since the
transaction began answers ``unknown_transaction`` saying so.

Every endpoint but health wants ``Authorization: Bearer <token>``, an
Ed25519-signed token (see ``server/auth.py``); without a valid one the
answer is 401 ``unauthorized`` with the reason.  A statement or operation the
caller's role may not run is 403 ``policy_violation`` with the statement's
``fingerprint`` and ``refused_step``; no step of that request runs.

Errors, on every endpoint: ``{"error": {"code": CODE, "message": TEXT, ...}}``
with the HTTP status of :data:`ERROR_STATUS`.  A database error adds
``dbapi_class`` (the PEP 249 class name), ``args``, ``sqlstate`` / ``errno``
where the driver gives one, and ``step``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

PROTOCOL_VERSION = 1
PROTOCOL_HEADER = "X-Session-Proxy-Protocol"
REQUEST_ID_HEADER = "X-Request-Id"
#: A client-chosen key naming one request; a retry sends the same key.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
#: 1, 2, ... on the retries of a request (absent on its first attempt).
RETRY_ATTEMPT_HEADER = "X-Retry-Attempt"
#: "true" on a response the server answered from its record of an earlier attempt.
REPLAYED_HEADER = "X-Idempotent-Replay"
#: Idempotency keys: 16 to 128 characters of ``[A-Za-z0-9_-]``.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")

HEALTH_PATH = "/v1/health"
PIPELINE_PATH = "/v1/pipeline"
METRICS_PATH = "/v1/metrics"
OPERATIONS_PREFIX = "/v1/operations/"
#: ``POST`` opens a server session (session pooling); ``DELETE /v1/sessions/<id>`` closes it.
SESSIONS_PATH = "/v1/sessions"
OPERATION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

# Response headers with per-request measurements.
SERVER_TIME_HEADER = "X-Server-Time"
STATEMENTS_HEADER = "X-Statements"
TRANSACTION_TIME_HEADER = "X-Transaction-Seconds"

JSON_CONTENT_TYPE = "application/json"

# Step operations.
BEGIN = "begin"
EXECUTE = "execute"
EXECUTE_MANY = "execute_many"
FETCH = "fetch"
CLOSE = "close"
COMMIT = "commit"
ROLLBACK = "rollback"
EXECUTE_SCRIPT = "execute_script"
STEP_OPS = frozenset(
    {BEGIN, EXECUTE, EXECUTE_MANY, FETCH, CLOSE, COMMIT, ROLLBACK, EXECUTE_SCRIPT}
)
#: Bounds of a ``begin`` step's ``session`` prologue (statement count, UTF-8 bytes).
MAX_SESSION_STATEMENTS = 32
MAX_SESSION_BYTES = 16_384

CONNECTION_OPTIONS = frozenset({"isolation_level", "read_only", "deferrable"})
#: Every isolation level a ``begin`` may name; each backend accepts a subset
#: (the server refuses the others, naming the ones it has).
ISOLATION_LEVELS = frozenset(
    {"AUTOCOMMIT", "READ COMMITTED", "READ UNCOMMITTED", "REPEATABLE READ", "SERIALIZABLE"}
)
#: The fields of each step op: :data:`session_proxy.wire.messages.STEP_FIELDS`.
#: The keys of a ``/v1/pipeline`` body.
PIPELINE_FIELDS = frozenset({"protocol", "txn", "session_id", "steps"})
#: The keys of a ``POST /v1/sessions`` body.
SESSION_FIELDS = frozenset({"protocol"})
#: How a client's connections map to database connections: one lease per
#: transaction (the default), or one database connection held for the
#: life of the client connection (the server must allow it).
POOLING_MODES = ("transaction", "session")

# Error codes and the HTTP status each is sent with.
BAD_REQUEST = "bad_request"
UNSUPPORTED_PROTOCOL = "unsupported_protocol"
UNKNOWN_TRANSACTION = "unknown_transaction"
TRANSACTION_EXPIRED = "transaction_expired"
UNKNOWN_CURSOR = "unknown_cursor"
TOO_LARGE = "request_too_large"
TOO_MANY_TRANSACTIONS = "too_many_transactions"
TRANSACTION_BUSY = "transaction_busy"
DATABASE_ERROR = "database_error"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
INTERNAL_ERROR = "internal_error"
UNKNOWN_OPERATION = "unknown_operation"
BAD_ARGUMENTS = "bad_arguments"
OPERATION_ERROR = "operation_error"
ROWCOUNT_MISMATCH = "rowcount_mismatch"
UNAUTHORIZED = "unauthorized"
POLICY_VIOLATION = "policy_violation"
SUBJECT_LIMIT = "subject_limit"
UNSAFE_PAYLOAD = "unsafe_payload"
WRONG_INSTANCE = "wrong_instance"
SHUTTING_DOWN = "shutting_down"
STALE_REQUEST = "stale_request"
#: Statement or parameter text the database would read differently from the server.
UNSAFE_STATEMENT = "unsafe_statement"
#: A statement whose effect would outlive its transaction or reach the
#: proxy's own records; refused whatever the policy (server.session_guard).
ISOLATION_VIOLATION = "isolation_violation"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
#: Session pooling: the server does not allow it; the id names no session of
#: this caller; the server closed the session (idle, connection lost,
#: restart); the server holds as many sessions as it may.
SESSIONS_DISABLED = "session_pooling_disabled"
UNKNOWN_SESSION = "unknown_session"
SESSION_CLOSED = "session_closed"
TOO_MANY_SESSIONS = "too_many_sessions"
#: Every server thread not kept for open transactions' next requests is
#: busy; a request that would start a transaction was not run.
SERVER_BUSY = "server_busy"

ERROR_STATUS: dict[str, int] = {
    BAD_REQUEST: 400,
    UNSUPPORTED_PROTOCOL: 400,
    UNKNOWN_CURSOR: 400,
    BAD_ARGUMENTS: 400,
    SESSIONS_DISABLED: 400,
    UNSAFE_PAYLOAD: 400,
    UNSAFE_STATEMENT: 400,
    UNAUTHORIZED: 401,
    POLICY_VIOLATION: 403,
    ISOLATION_VIOLATION: 403,
    UNKNOWN_OPERATION: 404,
    OPERATION_ERROR: 422,
    UNKNOWN_TRANSACTION: 404,
    UNKNOWN_SESSION: 404,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    TRANSACTION_BUSY: 409,
    STALE_REQUEST: 409,
    IDEMPOTENCY_CONFLICT: 409,
    ROWCOUNT_MISMATCH: 409,
    TRANSACTION_EXPIRED: 410,
    SESSION_CLOSED: 410,
    TOO_LARGE: 413,
    DATABASE_ERROR: 422,
    WRONG_INSTANCE: 421,
    SUBJECT_LIMIT: 429,
    INTERNAL_ERROR: 500,
    TOO_MANY_TRANSACTIONS: 503,
    SHUTTING_DOWN: 503,
    TOO_MANY_SESSIONS: 503,
    SERVER_BUSY: 503,
}

#: Errors after which nothing ran, so any request may be sent again.
RETRYABLE_ERRORS = frozenset(
    {TOO_MANY_TRANSACTIONS, TOO_MANY_SESSIONS, SHUTTING_DOWN, TRANSACTION_BUSY, SERVER_BUSY}
)

# PEP 249 exception class names a database error may carry.
DBAPI_ERROR_CLASSES = (
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
)


def same_backend(first: str, second: str) -> bool:
    """Whether two dialect names address the same kind of server (mysql = mariadb)."""
    family = {"mariadb": "mysql"}
    return family.get(first, first) == family.get(second, second)


def omit_none(body: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """``body`` plus the ``optional`` fields that are not None."""
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


@dataclasses.dataclass(frozen=True)
class ErrorBody:
    """The ``{"error": {...}}`` object of an error answer.

    ``extra`` holds the code-specific fields (``dbapi_class``, ``args``,
    ``sqlstate``, ``fingerprint``, ``expected``, ...); fields that are None
    are not sent.
    """

    code: str
    message: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def status(self) -> int:
        """The HTTP status this error is sent with."""
        return ERROR_STATUS.get(self.code, 500)

    @property
    def txn(self) -> Any:
        return self.extra.get("txn")

    @property
    def step(self) -> Any:
        return self.extra.get("step")

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        return {"error": omit_none(error, **self.extra)}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ErrorBody | None:
        """The error of an answer body, or None when it has no error object."""
        error = body.get("error")
        if not isinstance(error, dict):
            return None
        extra = {k: v for k, v in error.items() if k not in ("code", "message")}
        return cls(str(error.get("code") or ""), str(error.get("message", "")), extra)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error response (:meth:`ErrorBody.to_json`)."""
    return ErrorBody(code, message, extra).to_json()


def operation_request(args: Any, kwargs: Any) -> dict[str, Any]:
    """The body of a ``/v1/operations/<name>`` request (values already encoded)."""
    return {"protocol": PROTOCOL_VERSION, "args": args, "kwargs": kwargs}


def pipeline_request(
    txn: str | None, steps: list[dict], session_id: str | None = None
) -> dict[str, Any]:
    """The body of a ``/v1/pipeline`` request (``session_id``: the server
    session it runs in, under session pooling)."""
    body: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "txn": txn, "steps": steps}
    if session_id is not None:
        body["session_id"] = session_id
    return body


def session_request() -> dict[str, Any]:
    """The body of a ``POST /v1/sessions`` request."""
    return {"protocol": PROTOCOL_VERSION}
